"""``mlrag serve --workers 2`` on a real ``chroma run`` server: both workers answer search
and ask exactly as a single-process service on the same server does; an ingest started on
one worker is reported by every worker; after a changed corpus is ingested, every worker
serves the new version (BM25 included) within the BM25 freshness interval; /metrics sums
both workers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import hash_key
from api.workers import WORKER_HEADER
from tests.conftest import REPO_ROOT
from tests.ingest.test_chroma_server import _free_port, chroma_url  # noqa: F401 - fixture

pytestmark = [pytest.mark.server, pytest.mark.slow]

MLRAG = REPO_ROOT / ".venv" / "bin" / "mlrag"
ADMIN = "workers-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
FRESHNESS_S = 2.0  # rag.lexical.LexicalIndex's default freshness_interval_s
HEADER = WORKER_HEADER.decode()

CORPUS_V1 = {
    "dropout.md": "# Dropout\n\nDropout randomly sets a fraction of the activations to zero "
    "during training, which keeps units from co-adapting and reduces overfitting.\n",
    "pca.md": "# PCA\n\nPrincipal component analysis projects the data onto the directions of "
    "maximum variance, called principal components.\n",
    "gd.md": "# Gradient descent\n\nGradient descent minimizes a loss by moving the parameters "
    "against the gradient; the learning rate sets the step size.\n",
}
# v2: one document changed (a term no v1 chunk has), one removed, one added.
CORPUS_V2 = {
    "dropout.md": "# Dropout\n\nDropout zeroes random activations during training; the "
    "zebrafinch schedule anneals the drop rate towards zero.\n",
    "pca.md": CORPUS_V1["pca.md"],
    "adam.md": "# Adam\n\nAdam keeps running averages of the gradients and their squares to "
    "adapt the learning rate of every parameter.\n",
}
QUESTIONS = [
    "What does dropout do during training?",
    "What is principal component analysis?",
    "How does gradient descent choose its step size?",
]


def _write_corpus(root: Path, files: dict[str, str]) -> list[dict[str, str]]:
    for old in root.glob("*.md"):
        old.unlink()
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return [{"kind": "path", "location": name, "topic": "ml"} for name in sorted(files)]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    return root


@pytest.fixture
def workers_url(tmp_path: Path, chroma_url: str, corpus: Path) -> Iterator[str]:  # noqa: F811
    """``mlrag serve --workers 2`` on the Chroma server; yields its base URL."""
    if not MLRAG.exists():
        pytest.skip(f"mlrag not installed at {MLRAG}")
    port = _free_port()
    env = {
        **os.environ,
        "MLRAG_DATA_DIR": str(tmp_path / "data-workers"),
        "MLRAG_CHROMA_URL": chroma_url,
        "MLRAG_GENERATOR": "extractive",
        "MLRAG_TORCH_THREADS": "1",
        "MLRAG_ADMIN_KEY_HASHES": json.dumps([hash_key(ADMIN)]),
        "MLRAG_INGEST_ROOTS": json.dumps([str(corpus)]),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "workers.log").open("wb")
    proc = subprocess.Popen(
        [str(MLRAG), "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 180
        while len(seen) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (tmp_path / "workers.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"two workers did not come up:\n{text}")
            try:
                # A fresh connection each time, so the kernel may hand it to either worker.
                response = httpx.get(f"{base}/v1/config", timeout=5)
                if response.status_code == 200 and response.json()["ready"]:
                    seen.add(response.headers[HEADER])
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _each_worker(call: Any, *, workers: int = 2, attempts: int = 60) -> dict[str, Any]:
    """``call()`` (a response) repeated on fresh connections until every worker answered;
    {worker pid: the list of its JSON answers}."""
    answers: dict[str, list[Any]] = {}
    for _ in range(attempts):
        response = call()
        assert response.status_code == 200, response.text
        is_json = response.headers["content-type"].startswith("application/json")
        answers.setdefault(response.headers[HEADER], []).append(
            response.json() if is_json else response.text
        )
        if len(answers) >= workers and sum(map(len, answers.values())) >= 2 * workers:
            return answers
    raise AssertionError(f"only workers {sorted(answers)} answered in {attempts} requests")


def _ingest(base: str, sources: list[dict[str, str]], prune: bool) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/v1/ingest", json={"sources": sources, "prune": prune}, headers=AUTH, timeout=30
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    reporters: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        # Polls land on either worker: each must know the job (404 without the shared board).
        polled = httpx.get(f"{base}/v1/ingest/{job_id}", headers=AUTH, timeout=10)
        assert polled.status_code == 200, polled.text
        reporters.add(polled.headers[HEADER])
        job = polled.json()
        if job["status"] in ("succeeded", "failed"):
            assert job["status"] == "succeeded", job
            # Let both workers report the finished job.
            _each_worker(lambda: httpx.get(f"{base}/v1/ingest/{job_id}", headers=AUTH))
            return job
        time.sleep(0.2)
    raise AssertionError(f"ingest job {job_id} did not finish")


def _normalised_hits(body: dict[str, Any]) -> list[tuple[str, float]]:
    return [(hit["chunk_id"], round(hit["score"], 4)) for hit in body["hits"]]


def _normalised_answer(body: dict[str, Any]) -> tuple[Any, ...]:
    return (
        body["text"],
        body["abstained"],
        [(c["n"], c["chunk_id"], c["quote"]) for c in body["citations"]],
    )


def _single_process(tmp_path: Path, chroma: str, embedder: Any) -> Any:
    """The same service in one process (in this test process) on the same Chroma server."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from rag.config import Settings
    from rag.pipeline import RAG

    settings = Settings(
        data_dir=tmp_path / "data-single",
        chroma_url=chroma,
        generator="extractive",
        torch_threads=1,
    )
    return TestClient(create_app(settings, rag=RAG(settings, embedder=embedder)))


def _compare(base: str, single: Any) -> int:
    """Every worker answers every question as the single process does; returns how many
    searches the workers served."""
    searches = 0
    for question in QUESTIONS:
        for retriever in ("hybrid", "bm25"):
            body = {"query": question, "k": 3, "retriever": retriever}
            expected = single.post("/v1/search", json=body)
            assert expected.status_code == 200, expected.text
            answers = _each_worker(lambda body=body: httpx.post(f"{base}/v1/search", json=body))
            searches += sum(map(len, answers.values()))
            for worker, results in answers.items():
                for result in results:
                    assert _normalised_hits(result) == _normalised_hits(expected.json()), worker
        ask = {"question": question, "generator": "extractive"}
        expected_answer = single.post("/v1/ask", json=ask)
        assert expected_answer.status_code == 200, expected_answer.text
        answers = _each_worker(lambda ask=ask: httpx.post(f"{base}/v1/ask", json=ask, timeout=60))
        for worker, results in answers.items():
            for result in results:
                assert _normalised_answer(result) == _normalised_answer(expected_answer.json()), (
                    worker
                )
    return searches


def _metric_total(text: str, name: str, route: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_answer_like_one_process_before_and_after_an_ingest(
    tmp_path: Path,
    chroma_url: str,  # noqa: F811
    corpus: Path,
    workers_url: str,
    embedder: Any,
) -> None:
    base = workers_url
    _ingest(base, _write_corpus(corpus, CORPUS_V1), prune=False)
    single = _single_process(tmp_path, chroma_url, embedder)
    with single:
        time.sleep(FRESHNESS_S + 0.5)  # the non-ingesting worker's BM25 check is due
        searches = _compare(base, single)

        # A changed corpus: every worker serves it, BM25 (a v2-only term) included.
        _ingest(base, _write_corpus(corpus, CORPUS_V2), prune=True)
        time.sleep(FRESHNESS_S + 0.5)
        probe = {"query": "zebrafinch schedule", "k": 3, "retriever": "bm25"}
        answers = _each_worker(lambda: httpx.post(f"{base}/v1/search", json=probe))
        searches += sum(map(len, answers.values()))
        for worker, results in answers.items():
            for result in results:
                assert result["hits"] and "zebrafinch" in result["hits"][0]["text"], (
                    worker,
                    result,
                )
        removed = {"query": "gradient descent minimizes a loss", "k": 5, "retriever": "bm25"}
        for results in _each_worker(lambda: httpx.post(f"{base}/v1/search", json=removed)).values():
            searches += len(results)
            for result in results:
                assert all("descent minimizes" not in h["text"] for h in result["hits"]), result
        searches += _compare(base, single)

    # /metrics on either worker sums both workers' requests (each served about half).
    for worker, texts in _each_worker(lambda: httpx.get(f"{base}/metrics")).items():
        for text in texts:
            counted = _metric_total(text, "mlrag_http_request_duration_seconds_count", "/v1/search")
            assert counted == searches, (worker, counted, searches)
