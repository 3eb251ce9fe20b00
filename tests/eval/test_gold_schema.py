"""The gold schema of issue 13: a plain user file (only ``question`` required) with documented
defaults, follow-up history, the new kinds and their report groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.gold import GROUPS, GoldItem, load_gold, parse_gold_lines
from rag.errors import InvalidInputError
from rag.types import Turn

HARD = Path(__file__).resolve().parents[2] / "eval" / "gold" / "hard.jsonl"


def _lines(*rows: dict) -> list[str]:
    return [json.dumps(r) for r in rows]


def test_minimal_file_parses_with_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "what is broadcasting?"}\n\n{"question": "lora r?"}\n')
    first, second = load_gold([path])
    assert first.id == "mine-L1" and second.id == "mine-L3"  # stem + line number
    assert first.answerable is None and not first.labelled  # unlabelled
    assert first.kind == "question" and first.split == "test" and first.history == []
    assert first.answer is None and first.reference == "" and first.evidence == []
    assert first.group == "unlabelled"


def test_answerable_follows_from_what_the_item_gives() -> None:
    evidence, answer, null, nearmiss, explicit = parse_gold_lines(
        _lines(
            {"question": "a?", "evidence": ["quote"]},
            {"question": "b?", "answer": "B."},
            {"question": "c?", "answer": None},
            {"question": "d?", "kind": "nearmiss"},
            {"question": "e?", "answer": "E.", "answerable": False},
        )
    )
    assert evidence.answerable is True and answer.answerable is True
    assert null.answerable is False and null.kind == "unanswerable" and null.group == "unanswerable"
    assert nearmiss.answerable is False and nearmiss.group == "nearmiss"
    assert explicit.answerable is False  # an explicit label wins


def test_history_makes_a_followup_passed_as_turns() -> None:
    (item,) = parse_gold_lines(
        _lines(
            {
                "question": "what about the learning rate there?",
                "evidence": ["lr=1e-3"],
                "history": [
                    {"role": "user", "content": "which weights does the page load?"},
                    {"role": "assistant", "content": "ResNet50 ImageNet weights."},
                ],
            }
        )
    )
    assert item.kind == "followup" and item.group == "followup"
    assert item.turns() == [
        Turn(role="user", content="which weights does the page load?"),
        Turn(role="assistant", content="ResNet50 ImageNet weights."),
    ]


def test_bad_history_role_names_the_line() -> None:
    with pytest.raises(InvalidInputError, match=r"f\.jsonl:2: history"):
        parse_gold_lines(
            ["", json.dumps({"question": "q", "history": [{"role": "bot", "content": "x"}]})],
            "f.jsonl",
        )


@pytest.mark.parametrize(
    ("kind", "source", "group"),
    [
        ("typed", "corpus/machine-learning.txt", "typed"),
        ("multi", "corpus/machine-learning.txt", "multi"),
        ("keyword", "corpus/machine-learning.txt", "page"),
        ("keyword", "https://numpy.org/doc/x.html", "linked"),
    ],
)
def test_answerable_groups(kind: str, source: str, group: str) -> None:
    item = GoldItem.model_validate(
        {"id": "x", "question": "q", "evidence": ["e"], "source": source, "kind": kind}
    )
    assert item.group == group and group in GROUPS


def test_hard_set_has_the_issue_counts_and_splits() -> None:
    items = load_gold([HARD])
    counts = {g: sum(1 for i in items if i.group == g) for g in ("typed", "followup", "nearmiss")}
    assert counts["nearmiss"] >= 40 and counts["followup"] >= 25 and counts["typed"] >= 30
    for group in counts:
        subset = [i for i in items if i.group == group]
        dev = sum(1 for i in subset if i.split == "dev") / len(subset)
        # Dev grew past half for near-misses: 18 dev items were too few to show what the
        # 26 test items showed (dev declined 0.94, test 0.58), so 23 more were written for dev.
        assert 0.3 <= dev <= 0.65, group
    assert all(i.history for i in items if i.kind == "followup")
    assert all(i.answer is None and not i.evidence for i in items if i.kind == "nearmiss")


def test_cli_default_gold_reads_both_project_files() -> None:
    from cli.eval import default_gold_files

    assert [p.name for p in default_gold_files()] == ["gold.jsonl", "hard.jsonl"]
