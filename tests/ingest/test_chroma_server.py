"""Ingest into a ``chroma run`` server (MLRAG_CHROMA_URL) and query it back."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ingest.pipeline import index_status, ingest_documents
from rag.store import ChunkStore
from rag.types import Document

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMA = REPO_ROOT / ".venv" / "bin" / "chroma"

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chroma_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if not CHROMA.exists():
        pytest.skip(f"chroma CLI not found at {CHROMA}")
    port = _free_port()
    log = (tmp_path / "chroma.log").open("wb")
    proc = subprocess.Popen(
        [
            str(CHROMA),
            "run",
            "--path",
            str(tmp_path / "server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()

    request.addfinalizer(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"chroma server exited: {(tmp_path / 'chroma.log').read_text(errors='replace')[-2000:]}"
            )
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("chroma server did not answer its heartbeat within 60 s")


def test_ingest_into_server_and_query(tmp_path: Path, chroma_url: str, embedder) -> None:
    from rag.config import Settings

    settings = Settings(data_dir=tmp_path / "data", chroma_url=chroma_url, torch_threads=1)
    docs = [
        Document(
            id="file:lora.md",
            source="lora.md",
            title="LoRA",
            url="https://example.org/lora",
            text="# LoRA\n\n"
            + "LoRA freezes the pretrained weights and trains low-rank update matrices of rank r. "
            * 6,
            metadata={"topic": "peft"},
        ),
        Document(
            id="file:auc.md",
            source="auc.md",
            title="Metrics",
            url="https://example.org/auc",
            text="# Metrics\n\n"
            + "For imbalanced fraud detection, PR-AUC is more informative than ROC-AUC. " * 6,
            metadata={"topic": "metrics"},
        ),
    ]
    store = ChunkStore.from_settings(settings, embedder)
    summary = ingest_documents(settings, docs, store=store, progress=False)
    assert summary.chunks_added == store.count() > 0 and summary.failed == []

    # A fresh client (as another process would open it) sees the same collection.
    reopened = ChunkStore.from_settings(settings, embedder)
    hits = reopened.query(embedder.embed_query("Which metric suits imbalanced fraud data?"), 1)
    assert hits[0][0].doc_id == "file:auc.md"
    assert hits[0][0].url == "https://example.org/auc"
    assert reopened.corpus_version() == store.corpus_version() != ""

    again = ingest_documents(settings, docs, store=reopened, progress=False)
    assert again.chunks_added == 0 and again.chunks_unchanged == summary.chunks_added
    status = index_status(settings, reopened)
    assert status["documents"] == 2 and status["store"] == chroma_url
