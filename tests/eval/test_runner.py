"""The runner end to end on a tiny store with 5 gold items (extractive only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.runner import RunOptions, run_eval
from rag.config import Settings
from rag.pipeline import RAG
from tests.eval.tiny_corpus import build_tiny_store, write_gold


@pytest.fixture
def tiny_rag(settings: Settings, embedder) -> RAG:
    store = build_tiny_store(settings, embedder)
    return RAG(settings, embedder=embedder, store=store)


def test_run_writes_every_file_with_sane_numbers(tiny_rag: RAG, tmp_path: Path) -> None:
    gold = write_gold(tmp_path / "gold.jsonl")
    labels = tmp_path / "labels.jsonl"
    rows = [
        {"id": "jl-1", "sentence": "PR-AUC is the metric to watch.", "context": ["Fraud detection: PR-AUC is the metric to watch."], "label": "supported"},
        {"id": "jl-2", "sentence": "The Eiffel Tower is in Paris.", "context": ["Broadcasting combines arrays."], "label": "unsupported"},
    ]  # fmt: skip
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "run"
    options = RunOptions(
        judge_labels=labels,
        gold=[gold], out=out, retrievers=["dense", "bm25", "hybrid+rerank"],
        generators=["extractive"], k=3, split="test", progress=False,
    )  # fmt: skip
    results = run_eval(tiny_rag.settings, options, rag=tiny_rag)
    for name in ("results.json", "report.md", "report.html", "wrong.md"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "results.json").read_text())["run"]["items"] == 5
    # No reranker configured: skipped with the reason, not a crash.
    assert (
        "hybrid+rerank" in results["skipped"]
        and "MLRAG_RERANKER_MODEL" in results["skipped"]["hybrid+rerank"]
    )
    summary = results["retrieval"]["summary"]
    assert set(summary) == {"dense", "bm25"}
    # Three tiny documents: every answerable item's evidence is within 3,000 characters.
    assert summary["dense"]["overall"]["budget_any@3000"]["mean"] == 1.0
    assert summary["dense"]["n"] == 4
    answers = results["answers"]["summary"]["dense/extractive"]
    assert answers["correct_abstention"]["mean"] == 1.0  # the capital of Australia
    assert answers["false_abstention"]["mean"] == 0.0
    assert answers["citation_validity_pooled"] >= 0.95  # extractive quotes its context
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "http" not in html.split("<body>")[0]
    md = (out / "report.md").read_text()
    assert "offline" in md and "dense/extractive" in md and "## Targets" in md
    assert "agreement 1.00, Cohen's kappa 1.00 on 2 sentences" in md
    record = results["run"]
    assert (
        record["gold_hash"] and record["corpus_version"]["dense"] and record["settings"]["k"] == 5
    )
    # Second run is served from the retrieval cache.
    again = run_eval(tiny_rag.settings, options, rag=tiny_rag)
    assert again["run"]["cache_hits"] >= 8 and again["run"]["answer_cache_hits"] == 10
    assert again["retrieval"]["summary"]["dense"]["overall"] == summary["dense"]["overall"]


def test_cached_results_of_other_code_are_not_reused(
    tiny_rag: RAG, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keys once held only settings and the question: a changed verify step was scored
    # on the answers of the code before it. The answering core's digest is in the keys now.
    import eval.runner as runner

    options = RunOptions(
        gold=[write_gold(tmp_path / "gold.jsonl")], out=tmp_path / "run", retrievers=["dense"],
        generators=["extractive"], k=3, split="test", progress=False, judge_labels=tmp_path / "x",
    )  # fmt: skip
    run_eval(tiny_rag.settings, options, rag=tiny_rag)
    assert run_eval(tiny_rag.settings, options, rag=tiny_rag)["run"]["answer_cache_hits"] == 5
    monkeypatch.setattr(runner, "code_version", lambda: "changed")
    again = run_eval(tiny_rag.settings, options, rag=tiny_rag)["run"]
    assert again["answer_cache_hits"] == 0 and again["cache_hits"] == 0


def test_code_version_follows_the_source(tmp_path: Path) -> None:
    from eval.runner import code_version

    (tmp_path / "a.py").write_text("x = 1\n")
    before = code_version(tmp_path)
    assert code_version(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path) != before


def _service(rag: RAG):
    """An httpx transport answering /v1/search and /v1/ask like the API does (no hits in ask)."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/search":
            if body["retriever"] not in rag.retriever_names():
                return httpx.Response(
                    400, json={"error": {"code": "unknown_name", "message": "unknown retriever"}}
                )
            hits = rag.search(body["query"], k=body["k"], retriever=body["retriever"])
            return httpx.Response(
                200, json={"hits": [h.to_dict() for h in hits], "retriever": body["retriever"]}
            )
        answer = rag.ask(
            body["question"], k=body["k"], retriever=body["retriever"], generator=body["generator"]
        )
        return httpx.Response(200, json=answer.to_dict())

    return httpx.MockTransport(handler)


def test_url_mode_matches_in_process(tiny_rag: RAG, tmp_path: Path) -> None:
    import httpx

    from eval.backends import HttpBackend

    gold = write_gold(tmp_path / "gold.jsonl")
    common = {
        "judge_labels": tmp_path / "no-labels.jsonl",
        "gold": [gold],
        "retrievers": ["dense", "nope"],
        "generators": ["extractive"],
        "k": 3,
        "progress": False,
    }
    local = run_eval(tiny_rag.settings, RunOptions(out=tmp_path / "a", **common), rag=tiny_rag)
    client = httpx.Client(transport=_service(tiny_rag), base_url="http://svc")
    backend = HttpBackend("http://svc", client=client)
    remote = run_eval(
        tiny_rag.settings, RunOptions(out=tmp_path / "b", url="http://svc", **common),
        backend=backend, embedder=tiny_rag.embedder,
    )  # fmt: skip
    assert "nope" in remote["skipped"] and remote["run"]["backend"] == "http://svc"
    assert (
        remote["retrieval"]["summary"]["dense"]["overall"]
        == local["retrieval"]["summary"]["dense"]["overall"]
    )
    la, ra = (r["answers"]["summary"]["dense/extractive"] for r in (local, remote))
    for metric in (
        "correct_abstention",
        "false_abstention",
        "citation_validity_pooled",
        "groundedness_pooled",
        "token_f1",
    ):
        assert la[metric] == ra[metric]


def test_cli_run_retrieval_only(
    tiny_rag: RAG, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from cli.main import main

    monkeypatch.setenv("MLRAG_TORCH_THREADS", "1")
    gold = write_gold(tmp_path / "gold.jsonl")
    out = tmp_path / "cli-run"
    argv = ["eval", "run", "--gold", str(gold), "--retrievers", "bm25", "--generators", "none",
            "--out", str(out), "--data-dir", str(tiny_rag.settings.data_dir), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "recall ≤3,000 chars, page items (bm25): 1.00" in printed and "wrote" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["answers"]["summary"] == {} and results["run"]["generators"] == []
