"""The gold validator (``eval.check`` and ``mlrag eval check``) catches each kind of bad item,
and the relevance normalisation it shares with the harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from eval.check import check_gold_files
from eval.gold import load_gold, select_split
from eval.relevance import contains_quote, normalize
from ingest.source_texts import SourceResolver
from rag.errors import InvalidInputError

URL = "https://example.org/docs/guide.html"
PAGE = "corpus/page.txt"
GUIDE = """# Guide

Some **bold** claim: gradient clipping stops exploding gradients.

<!-- editor note: mention momentum later -->

| Optimizer | Note |
|---|---|
| Adam | adaptive learning rates |
"""


@pytest.fixture
def resolver(tmp_path: Path) -> SourceResolver:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "guide.md").write_text(GUIDE, encoding="utf-8")
    manifest = [{"url": URL, "path": "guide.md", "title": "Guide", "topic": "guides"}]
    (mirror / "MANIFEST.json").write_text(json.dumps(manifest), encoding="utf-8")
    root = tmp_path / "project"
    (root / "corpus").mkdir(parents=True)
    (root / PAGE).write_text(
        "Fraud detection → PR-AUC (very imbalanced positive class)\n", encoding="utf-8"
    )
    return SourceResolver(project_root=root, mirror=mirror, sources_file=None)


def item(id_: str, question: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": id_, "question": question, "answer": "a", "evidence": ["gradient clipping stops exploding gradients"],
        "answerable": True, "source": URL, "topic": "guides", "kind": "keyword", "split": "dev",
    }  # fmt: skip
    return {**base, **fields}


def write(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def messages(path: Path, resolver: SourceResolver) -> list[str]:
    return [str(p) for p in check_gold_files([path], resolver)]


def test_a_good_file_has_no_problems(tmp_path: Path, resolver: SourceResolver) -> None:
    rows = [
        item("g-1", "what stops exploding gradients?"),
        # Markup and whitespace differ from the file: normalisation makes them match.
        item("g-2", "what is adam good for", evidence=["Adam  |  adaptive learning rates"], kind="paraphrase"),
        item("p-1", "metric for fraud?", evidence=["Fraud detection → PR-AUC (very imbalanced positive class)"],
             source=PAGE, topic="machine-learning"),
        item("u-1", "capital of Australia?", evidence=[], answerable=False, source="", kind="unanswerable"),
        item("m-1", "clipping and fraud metric?", evidence=["gradient clipping stops", "PR-AUC"], source=[URL, PAGE],
             kind="multi"),
    ]  # fmt: skip
    assert messages(write(tmp_path / "g.jsonl", rows), resolver) == []


def test_each_kind_of_bad_item_is_caught(tmp_path: Path, resolver: SourceResolver) -> None:
    rows = [
        item("a-1", "what stops exploding gradients?"),
        "{not json",
        item("a-1", "how do I clip gradients in training?"),  # duplicate id
        item("a-2", "What stops exploding gradients ?"),  # duplicate question (after normalisation)
        item("a-3", "what stops the exploding gradients?"),  # near duplicate
        item("a-4", "a question without evidence", evidence=[]),
        item(
            "a-5",
            "an unanswerable one with evidence",
            answerable=False,
            kind="unanswerable",
            source="",
        ),
        item("a-6", "a source nobody knows", source="https://nowhere.example/x.html"),
        item("a-7", "a missing file", source="corpus/missing.txt"),
        item(
            "a-8",
            "quote not in the source",
            evidence=["momentum accelerates convergence dramatically"],
        ),
        item("a-9", "quote only in the raw file", evidence=["editor note: mention momentum later"]),
        item("a-10", "bad kind", kind="trivia"),
        item("a-11", "a multi item with one quote", kind="multi"),
    ]
    found = messages(write(tmp_path / "bad.jsonl", rows), resolver)
    text = "\n".join(found)
    assert ":2: not valid JSON" in text
    assert ":3: a-1: duplicate id (first at" in text
    assert ":4: a-2: duplicate question of a-1" in text
    assert ":5: a-3: near-duplicate question of a-1" in text
    assert ":6: a-4: answerable item without evidence" in text
    assert ":7: a-5: unanswerable item with 1 evidence quote(s)" in text
    assert ":8: a-6: unknown source 'https://nowhere.example/x.html': not in mirror" in text
    assert ":9: a-7: unknown source 'corpus/missing.txt'" in text
    assert ":10: a-8: evidence #1 not found in" in text
    assert ":11: a-9: warning: evidence #1 occurs only in the raw file" in text
    assert ":12: kind: Input should be" in text
    assert ":13: a-11: multi item needs at least two evidence quotes" in text
    assert len(found) == 12  # one line per problem, nothing else


def test_cli_exit_status_and_one_line_per_problem(
    tmp_path: Path,
    resolver: SourceResolver,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(resolver.project_root)  # PAGE is relative to the project
    monkeypatch.setattr("eval.check.PROJECT_ROOT", resolver.project_root)
    good = write(tmp_path / "good.jsonl", [item("g-1", "what stops exploding gradients?")])
    bad = write(
        tmp_path / "bad.jsonl",
        [item("g-1", "q one?", evidence=[]), item("g-2", "q two?", source="corpus/x.txt")],
    )
    mirror = ["--mirror", str(resolver.mirror), "--sources", str(tmp_path / "none.toml")]
    assert main(["eval", "check", str(good), *mirror]) == 0
    capsys.readouterr()
    assert main(["eval", "check", str(bad), *mirror]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("g-1: answerable item without evidence")
    assert "g-2: unknown source 'corpus/x.txt'" in err[1]
    assert err[-1] == "2 problem(s) in 1 file(s)"


def test_relevance_normalisation() -> None:
    assert (
        normalize("  **PR-AUC**\n\n`better`  for  `imbalanced` ") == "pr-auc better for imbalanced"
    )
    assert contains_quote(
        "Use PR‑AUC — it is\nbetter for imbalanced data.", "it is better for imbalanced"
    )
    assert contains_quote("| Adam | adaptive learning rates |", "Adam adaptive learning rates")
    assert contains_quote("ＮｕｍＰｙ arrays", "numpy arrays")  # NFKC folds full-width letters
    assert not contains_quote("anything at all", "")
    assert not contains_quote("learning rate", "learning rates")


def test_load_gold_reports_the_bad_line_and_selects_splits(tmp_path: Path) -> None:
    good = write(tmp_path / "g.jsonl", [item("x-1", "q1?"), item("x-2", "q2?", split="test")])
    items = load_gold([good])
    assert [i.id for i in select_split(items, "test")] == ["x-2"] and len(
        select_split(items, "all")
    ) == 2
    assert items[0].group == "linked" and items[0].sources == [URL]
    bad = write(tmp_path / "b.jsonl", [item("x-1", "q1?"), {"id": "x-3"}])
    with pytest.raises(InvalidInputError, match=r"b.jsonl:2: question: Field required"):
        load_gold([bad])
    with pytest.raises(InvalidInputError, match="unknown split"):
        select_split(items, "train")


def test_a_glob_over_the_gold_folder_skips_the_judge_labels(tmp_path: Path) -> None:
    gold = write(tmp_path / "gold.jsonl", [item("x-1", "q1?")])
    labels = write(
        tmp_path / "judge_labels.jsonl", [{"sentence": "s", "context": ["c"], "label": "supported"}]
    )
    assert [i.id for i in load_gold([gold, labels])] == ["x-1"]
