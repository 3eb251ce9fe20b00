"""The contamination check refuses training files that share questions (exact, normalised or
near-duplicate) or evidence quotes with the eval gold set."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.overlap import (
    DEFAULT_GOLD,
    check_file,
    find_overlaps,
    normalize_question,
    token_jaccard,
)
from rag.errors import InvalidInputError
from rag.qa import QAItem
from tests.finetune.conftest import GOLD, ITEMS, write_jsonl


def test_normalisation_and_jaccard() -> None:
    assert normalize_question("  What's LoRA's r?? ") == normalize_question("what s lora s r")
    assert (
        token_jaccard("which metric for fraud detection", "which metric for fraud detection?")
        == 1.0
    )
    assert token_jaccard("a b c d e", "a b c d f") == pytest.approx(4 / 6)


def test_clean_file_passes(files: dict[str, Path]) -> None:
    assert len(check_file(files["train"], files["gold"])) == len(ITEMS)


def test_contaminated_file_is_refused_with_the_offending_ids(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    contaminated = [
        *ITEMS,
        # the same question, other case and punctuation
        {**ITEMS[0], "id": "c-same", "question": "WHICH matrices does LoRA add to a layer"},
        # a near-duplicate of g-3: one word of twelve changed (jaccard 11/13 ≈ 0.85)
        {
            **ITEMS[0],
            "id": "c-near",
            "question": "which two matrices does lora add to each layer of a model",
        },
        # a different question quoting the gold item's evidence
        {
            **ITEMS[1],
            "id": "c-quote",
            "question": "tell me about layers",
            "evidence": [
                "LoRA trains two low rank matrices per layer and the model weights are not trained."
            ],
        },
    ]
    gold = [
        *GOLD,
        {
            "id": "g-3",
            "question": "which two matrices does lora add to each layer of the model",
            "answer": "A and B.",
            "evidence": ["A starts random and B starts at zero"],
            "answerable": True,
            "kind": "keyword",
            "split": "dev",
        },
    ]
    train = write_jsonl(tmp_path / "train.jsonl", contaminated)
    gold_file = write_jsonl(tmp_path / "gold.jsonl", gold)
    with pytest.raises(InvalidInputError) as info:
        check_file(train, gold_file)
    message = str(info.value)
    assert "(3 item(s): c-near, c-quote, c-same)" in message
    reasons = {
        (o.train_id, o.gold_id): o.reason
        for o in find_overlaps(
            [QAItem.model_validate({**r, "split": "train"}) for r in contaminated],
            [QAItem.model_validate(g) for g in gold],
        )
    }
    assert reasons[("c-same", "g-1")] == "same question"
    assert reasons[("c-near", "g-3")].startswith("near-duplicate question (jaccard 0.8")
    assert reasons[("c-quote", "g-1")] == "shared evidence"


def test_short_quotes_count_only_when_equal() -> None:
    train = [
        QAItem(
            id="t", question="q one two", answer="a", evidence=["learning rate"], answerable=True
        )
    ]
    gold = [
        QAItem(
            id="g",
            question="another thing",
            answer="a",
            evidence=["the learning rate schedule"],
            answerable=True,
        )
    ]
    assert find_overlaps(train, gold) == []
    gold_same = [
        QAItem(
            id="g",
            question="another thing",
            answer="a",
            evidence=["Learning  rate"],
            answerable=True,
        )
    ]
    assert [o.reason for o in find_overlaps(train, gold_same)] == ["shared evidence"]


def test_project_training_file_does_not_overlap_the_gold_set() -> None:
    data = DEFAULT_GOLD.parent.parent.parent / "finetune" / "data" / "train.jsonl"
    if not data.is_file() or not DEFAULT_GOLD.is_file():
        pytest.skip("finetune/data/train.jsonl or the gold set is not there")
    assert check_file(data, DEFAULT_GOLD)
