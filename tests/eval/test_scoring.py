"""Answer scoring: citation validity, groundedness and citation recall per answer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.gold import GoldItem
from eval.scoring import score_answers


class WordJudge:
    """Supported when every word of the sentence occurs in the given context."""

    name = "words"
    threshold = 0.5

    def support(self, pairs: Sequence[tuple[str, list[str]]]) -> list[float]:
        return [
            float(all(w in " ".join(ctx).lower() for w in sentence.lower().strip(".").split()))
            for sentence, ctx in pairs
        ]

    def describe(self) -> str:
        return "words"


class ConstantEmbedder:
    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 2)) / np.sqrt(2)


ITEM = GoldItem(
    id="q1", question="What are cats?", answer="Cats purr.", evidence=["cats purr"],
    answerable=True, kind="keyword", split="test",
)  # fmt: skip
HITS = [{"text": "cats purr loudly"}, {"text": "dogs bark"}]


def score(text: str) -> dict:
    answer = {"text": text, "abstained": False, "hits": HITS}
    return score_answers([ITEM], [answer], WordJudge(), ConstantEmbedder())[0]


def test_citation_recall_counts_uncited_sentences_as_misses() -> None:
    uncited = score("Cats purr. Dogs bark.")
    # Groundedness falls back to the whole context for uncited sentences; recall does not.
    assert uncited["groundedness"] == 1.0
    assert uncited["citation_validity"] is None
    assert uncited["citation_recall"] == 0.0


def test_citation_recall_needs_a_supporting_citation() -> None:
    right = score("Cats purr [1]. Dogs bark [2].")
    assert right["citation_recall"] == 1.0 and right["citation_validity"] == 1.0
    wrong = score("Cats purr [2]. Dogs bark [2].")
    assert wrong["citation_recall"] == 0.5 and wrong["citation_validity"] == 0.5
    out_of_range = score("Cats purr [7].")  # points at nothing: not a citation
    assert out_of_range["citation_recall"] == 0.0


def test_abstained_answers_have_no_citation_recall() -> None:
    answer = {"text": "not covered", "abstained": True, "hits": HITS}
    result = score_answers([ITEM], [answer], WordJudge(), ConstantEmbedder())[0]
    assert result["citation_recall"] is None and result["groundedness"] is None
