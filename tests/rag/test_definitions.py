"""rag.definitions: which questions ask what a term is, which sentences say it, and which
chunk is put in the hits."""

from __future__ import annotations

import pytest

from rag.definitions import (
    DEFINES,
    LABELS,
    defined_term,
    definitions_in,
    definitions_of,
    unnamed_term,
    with_definition,
)
from rag.types import Chunk, Hit


@pytest.mark.parametrize(
    ("question", "term"),
    [
        ("whats lora", "lora"),
        ("What is a synset?", "synset"),
        ("what's broadcasting in numpy?", "broadcasting"),
        ("what are embeddings", "embeddings"),
        ("define precision", "precision"),
        ("what does RLHF stand for?", "RLHF"),
        ("what is spacy's Doc", "Doc"),
        ("kd-tree meaning", "kd-tree"),
        ("celery apply_async countdown=60 expires=120 meaning", None),  # what code does
        # questions about something else than what the term is
        ("What is KL divergence used for?", None),
        ("what's the difference between Dataset and DataLoader?", None),
        ("what is the default batch size", None),
        ("whats its downside?", None),
        ("What is the capital of Australia?", None),
        ("how do I use lora", None),
        ("what is the learning rate the page uses for lora fine tuning", None),
    ],
)
def test_defined_term(question: str, term: str | None) -> None:
    assert defined_term(question) == term


@pytest.mark.parametrize(
    ("text", "term", "strength", "sentence"),
    [
        (
            "Intro. Tensors are a specialized data structure. They run on GPUs.",
            "tensor",
            DEFINES,
            "Tensors are a specialized data structure.",
        ),
        (
            "Low-Rank Adaptation (LoRA) is a PEFT method that decomposes a matrix. More.",
            "lora",
            DEFINES,
            "Low-Rank Adaptation (LoRA) is a PEFT method that decomposes a matrix.",
        ),
        (
            "- `Synset`: a set of synonyms that share a common meaning.\n```pycon",
            "synset",
            LABELS,
            "Synset`: a set of synonyms that share a common meaning.",
        ),
        # the term inside a sentence, "is" not saying what it is, a label over a code block
        ("Since Celery is a distributed system, you can't know where it runs.", "celery", 0, ""),
        ("LoRA is orthogonal to other parameter-efficient methods.", "lora", 0, ""),
        ("Gradient Descent:\n\n```text\nLoss L", "gradient descent", 0, ""),
    ],
)
def test_definitions_of(text: str, term: str, strength: int, sentence: str) -> None:
    found_strength, sentences = definitions_of(text, term)
    assert found_strength == strength
    assert sentences == ([sentence] if sentence else [])


def test_a_sentence_that_defines_is_stronger_than_a_label() -> None:
    text = "Tensor: 3D+ array\nA tensor is a multi-dimensional array."
    assert definitions_of(text, "tensor") == (DEFINES, ["A tensor is a multi-dimensional array."])


def _chunk(cid: str, text: str, position: int = 0) -> Chunk:
    return Chunk(id=cid, doc_id=cid.split("#")[0], text=text, position=position)


def _hits(*chunks: Chunk) -> list[Hit]:
    return [Hit(chunk, 1.0 - i / 10, i + 1, "hybrid") for i, chunk in enumerate(chunks)]


class FakeIndex:
    """The lexical index's search: the given chunks, in order, for any query."""

    def __init__(self, *chunks: Chunk) -> None:
        self.chunks = chunks
        self.searched: list[tuple[str, object]] = []

    def search(self, query: str, k: int, filters=None) -> list[tuple[Chunk, float]]:
        self.searched.append((query, filters))
        return [(chunk, 1.0) for chunk in self.chunks[:k]]


OPTIONS = _chunk("lora#3", "LoRA-FA reduces activation memory. LoRA+ uses two learning rates.", 3)
RANKS = _chunk("lora#2", "All LoRA layers take the default r and lora_alpha.", 2)
LATE = _chunk("diffusion#5", "LoRA is an especially popular method for diffusion models.", 5)
OPENING = _chunk("lora#0", "Low-Rank Adaptation (LoRA) is a PEFT method. It saves memory.", 0)
LABEL = _chunk("page#7", "LoRA: add small trainable rank-decomposition matrices", 0)


def test_the_defining_chunk_takes_the_last_hits_place() -> None:
    index = FakeIndex(LABEL, LATE, OPENING)
    hits = _hits(RANKS, OPTIONS)
    pinned = with_definition("whats lora", hits, index, {"topic": "peft"})  # type: ignore[arg-type]
    # Of the two that say what LoRA "is a", the one opening its page; not the label line.
    assert [hit.chunk.id for hit in pinned] == ["lora#2", "lora#0"]
    assert (pinned[1].rank, pinned[1].score) == (2, hits[1].score)
    assert index.searched == [("lora", {"topic": "peft"})]  # the term, within the filters


def test_hits_stay_when_one_defines_the_term_as_strongly_or_none_is_found() -> None:
    index = FakeIndex(OPENING)
    assert with_definition("whats lora", _hits(LATE, OPTIONS), index) == _hits(LATE, OPTIONS)  # type: ignore[arg-type]
    assert with_definition("what is lora", _hits(RANKS, OPENING), index) == _hits(RANKS, OPENING)  # type: ignore[arg-type]
    assert with_definition("what is qlora", _hits(RANKS), FakeIndex(OPTIONS)) == _hits(RANKS)  # type: ignore[arg-type]
    # Not a definition question: the index is not even searched.
    untouched = FakeIndex(OPENING)
    assert with_definition("how do I merge lora", _hits(RANKS), untouched) == _hits(RANKS)  # type: ignore[arg-type]
    assert untouched.searched == []


def test_a_label_is_pinned_when_nothing_says_more() -> None:
    pinned = with_definition("what is lora?", _hits(RANKS, OPTIONS), FakeIndex(LABEL))  # type: ignore[arg-type]
    assert pinned[-1].chunk.id == "page#7"


def test_definitions_in_the_hits_strongest_first() -> None:
    hits = _hits(LABEL, OPENING, OPTIONS)
    assert definitions_in("whats lora", hits) == [
        "Low-Rank Adaptation (LoRA) is a PEFT method.",
        "LoRA: add small trainable rank-decomposition matrices",
    ]
    assert definitions_in("how does lora work", hits) == []


def test_a_definition_must_cite_a_passage_naming_the_term() -> None:
    # "what is flash attention" was answered from a line on self-attention.
    attention = ["The Transformer replaced recurrence with self-attention."]
    assert unnamed_term("what is flash attention", attention) == ["flash attention"]
    assert unnamed_term("what is flash attention", ["Flash-attention is a kernel."]) == []
    assert unnamed_term("whats a kd tree", ["from scipy.spatial import KDTree"]) == []
    assert unnamed_term("what are tensors", ["A tensor is an array."]) == []
    assert unnamed_term("what is kubeflow pipelines", ["Pipelines in Kubeflow run ..."]) == []
    # Not a definition question, or nothing cited: other checks decide.
    assert unnamed_term("how does flash attention work", attention) == []
    assert unnamed_term("what is flash attention", []) == []
