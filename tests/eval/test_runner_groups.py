"""The runner on a plain user file and on follow-ups (issue 13): history reaches the backend,
unlabelled items get no reference metrics, and answers are summarised per group."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.runner import RunOptions, run_eval
from rag.config import Settings

QUOTE = "Two dimensions are compatible when they are equal, or one of them is 1."
TEXT = f"Broadcasting rules. {QUOTE}"


class FakeBackend:
    """Answers every question by quoting the one chunk; declines 'gpt-4' questions."""

    label = "fake"

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []
        self.searched: list[str] = []

    def corpus_version(self, retriever: str = "") -> str:
        return "v1"

    def unavailable(self, retriever: str) -> str | None:
        return None

    def search(self, question: str, k: int, retriever: str) -> tuple[list[dict], float]:
        self.searched.append(question)
        return [{"rank": 1, "chunk_id": "c1", "text": TEXT, "source": "s"}], 1.0

    def ask(self, question, k, retriever, generator, adapter, history=None) -> dict:
        self.asked.append((question, history))
        hits = [{"rank": 1, "chunk_id": "c1", "text": TEXT, "source": "s"}]
        if "gpt-4" in question:
            return {"text": "I don't know.", "abstained": True, "citations": [], "hits": hits}
        citation = {"n": 1, "chunk_id": "c1", "title": "t", "quote": QUOTE}
        return {
            "text": "They must be equal or 1 [1].",
            "abstained": False,
            "citations": [citation],
            "hits": hits,
        }


class AlwaysJudge:
    threshold = 0.5

    def support(self, pairs: Sequence[tuple[str, list[str]]]) -> list[float]:
        return [1.0 for _ in pairs]

    def describe(self) -> str:
        return "always"


class ConstantEmbedder:
    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 2)) / np.sqrt(2)


def test_followups_unlabelled_and_groups(settings: Settings, tmp_path: Path) -> None:
    rows = [
        {"question": "np broadcasting rules plz"},  # unlabelled: only a question
        {"question": "and when do two dims fit?", "evidence": [QUOTE], "source": "https://numpy.org/b.html",
         "topic": "numpy", "history": [{"role": "user", "content": "what is numpy broadcasting?"},
                                        {"role": "assistant", "content": "Arithmetic on different shapes."}]},
        {"question": "how many params does gpt-4 have?", "kind": "nearmiss"},
        {"question": "broadcast rules pls", "kind": "typed", "evidence": [QUOTE], "source": "https://numpy.org/b.html"},
    ]  # fmt: skip
    gold = tmp_path / "user.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    backend = FakeBackend()
    options = RunOptions(
        gold=[gold], out=tmp_path / "run", retrievers=["hybrid"], generators=["extractive"],
        split="test", progress=False, use_cache=False, judge_labels=tmp_path / "none.jsonl",
    )  # fmt: skip
    results = run_eval(
        settings, options, backend=backend, judge=AlwaysJudge(), embedder=ConstantEmbedder()
    )
    # The follow-up's history reached the backend as turns; the others went without.
    history = {q: h for q, h in backend.asked}
    assert [t.role for t in history["and when do two dims fit?"]] == ["user", "assistant"]
    assert history["np broadcasting rules plz"] is None
    # Retrieval for the follow-up searched the condensed query, not the bare question.
    assert "and when do two dims fit?" not in backend.searched
    records = {
        r["id"]: r for r in results["answers"]["per_question"]["hybrid/extractive"]["records"]
    }
    free = records["user-L1"]
    assert free["group"] == "unlabelled" and free["answerable"] is None
    assert free["false_abstention"] is None and free["correct_abstention"] is None
    assert free["evidence_in_answer"] is None and free["token_f1"] is None
    assert free["cites"] is True and free["citation_validity"] == 1.0
    groups = results["answers"]["summary"]["hybrid/extractive"]["groups"]
    assert list(groups) == ["typed", "followup", "nearmiss", "unlabelled"]  # report order
    assert groups["followup"]["evidence_in_answer"] == 1.0
    assert groups["typed"]["false_abstention"] == 0.0
    assert groups["nearmiss"]["correct_abstention"] == 1.0 and groups["nearmiss"]["cites"] is None
    assert (
        groups["unlabelled"]["evidence_in_answer"] is None and groups["unlabelled"]["cites"] == 1.0
    )
    assert results["run"]["unlabelled"] == 1 and results["run"]["groups"]["followup"] == 1
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "followup: any" in report and "typed: all" in report  # retrieval by group
    assert "### Answers by group" in report and "| hybrid/extractive | nearmiss | 1 |" in report
