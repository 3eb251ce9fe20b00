"""Evidence in the answer (issue 13): answer text plus citation quotes carry ≥ 60 % of the
words of a gold evidence quote; and the per-item scoring of unlabelled and follow-up items."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.gold import GoldItem
from eval.metrics import evidence_in_answer, evidence_word_share
from eval.scoring import score_answers

QUOTE = "Fraud detect → PR-AUC (very imbalanced positive class)"


def test_citation_quote_counts_as_shown_evidence() -> None:
    # "PR-AUC [1]" alone carries 2 of 7 words; with the quote its citation shows, all of them.
    assert not evidence_in_answer("PR-AUC [1]", [], [QUOTE])
    assert evidence_in_answer("PR-AUC [1]", [QUOTE], [QUOTE])


def test_sixty_percent_threshold_and_any_quote() -> None:
    quote = "one two three four five"
    assert evidence_word_share("one two three", quote) == 0.6
    assert evidence_in_answer("one two three", [], [quote])
    assert not evidence_in_answer("one two", [], [quote])
    assert evidence_in_answer("alpha beta", [], [quote, "alpha beta gamma"])  # 2/3 of the 2nd


def test_normalised_words_markers_and_markup_ignored() -> None:
    assert (
        evidence_word_share(
            "LORA_ALPHA=32 [2], the Scaling factor", "lora_alpha=32, # scaling factor"
        )
        == 1.0
    )
    assert evidence_word_share("[1] [2]", "1 2 3") == 0.0  # citation markers are not words
    assert evidence_word_share("anything", "") == 0.0


class AlwaysJudge:
    threshold = 0.5

    def support(self, pairs: Sequence[tuple[str, list[str]]]) -> list[float]:
        return [1.0 for _ in pairs]

    def describe(self) -> str:
        return "always"


class ConstantEmbedder:
    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 2)) / np.sqrt(2)


def _answer(text: str, quote: str = "", abstained: bool = False) -> dict:
    citations = [{"n": 1, "quote": quote}] if quote else []
    return {
        "text": text,
        "abstained": abstained,
        "citations": citations,
        "hits": [{"text": quote or "x"}],
    }


def test_scoring_per_item() -> None:
    labelled = GoldItem.model_validate(
        {"id": "a", "question": "fraud metric?", "answer": "PR-AUC.", "evidence": [QUOTE]}
    )
    unlabelled = GoldItem.model_validate({"id": "u", "question": "fraud metric?"})
    unanswerable = GoldItem.model_validate(
        {"id": "n", "question": "gpt-4 params?", "kind": "nearmiss"}
    )
    scores = score_answers(
        [labelled, labelled, unlabelled, unanswerable, unlabelled],
        [_answer("PR-AUC [1].", QUOTE), _answer("", abstained=True), _answer("PR-AUC [1].", QUOTE),
         _answer("", abstained=True), _answer("No citation here.")],
        AlwaysJudge(), ConstantEmbedder(),
    )  # fmt: skip
    cited, declined, free, nearmiss, uncited = scores
    assert cited["evidence_in_answer"] is True and cited["cites"] is True
    assert cited["false_abstention"] is False and cited["token_f1"] is not None
    assert declined["evidence_in_answer"] is False and declined["false_abstention"] is True
    assert declined["cites"] is None  # a decline is not an answer that could cite
    # Unlabelled: no reference metric, only what needs none.
    for key in (
        "evidence_in_answer",
        "correct_abstention",
        "false_abstention",
        "token_f1",
        "embedding_similarity",
    ):
        assert free[key] is None, key
    assert (
        free["cites"] is True and free["citation_validity"] == 1.0 and free["groundedness"] == 1.0
    )
    assert nearmiss["correct_abstention"] is True and nearmiss["evidence_in_answer"] is None
    assert uncited["cites"] is False
