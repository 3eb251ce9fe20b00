"""A store that cannot be opened or read (corrupt Chroma files) does not stop the service: it
starts, /health answers, /ready stays 503 with the reason, other routes answer 503
``store_unavailable`` in the error shape, and the log gets one clear line, no traceback."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from rag.errors import StoreUnavailableError
from tests.api.conftest import FakeRAG, fill_tiny_store

BROKEN = "the index at data/chroma cannot be read (corrupt); run `mlrag ingest --rebuild`"


def _errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_store_that_fails_at_start_up_leaves_health_up_and_ready_down(
    settings, monkeypatch, caplog
) -> None:
    import api.app

    def broken(_settings):
        raise StoreUnavailableError(BROKEN)

    monkeypatch.setattr(api.app, "load_rag", broken)
    caplog.set_level(logging.INFO)
    with TestClient(api.app.create_app(settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "not_ready"
        assert ready.json()["error"]["message"] == f"store_unavailable: {BROKEN}"
        for method, path, body in [
            ("POST", "/v1/ask", {"question": "What is overfitting?"}),
            ("POST", "/v1/search", {"query": "overfitting"}),
            ("GET", "/v1/sources", None),
        ]:
            response = client.request(method, path, json=body)
            assert response.status_code == 503, path
            assert response.json()["error"] == {"code": "store_unavailable", "message": BROKEN}
    start_up = [r for r in _errors(caplog) if r.name == "api.app"]
    assert len(start_up) == 1 and start_up[0].exc_info is None
    assert "store_unavailable" in start_up[0].getMessage()
    assert "\n" not in start_up[0].getMessage()


def test_an_unexpected_start_up_failure_still_serves_health(settings, monkeypatch) -> None:
    import api.app

    def broken(_settings):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(api.app, "load_rag", broken)
    with TestClient(api.app.create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and "RuntimeError" in ready.json()["error"]["message"]
        assert client.post("/v1/search", json={"query": "q"}).status_code == 503


class _StoreBrokeLater(FakeRAG):
    """Loaded fine, then the store became unreadable."""

    def is_ready(self) -> bool:
        raise StoreUnavailableError(BROKEN)

    def search(self, query, **kwargs):  # type: ignore[override]
        raise StoreUnavailableError(BROKEN)


def test_a_store_that_breaks_after_start_up_makes_ready_503(make_client) -> None:
    client = make_client(rag=_StoreBrokeLater())
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    assert "store_unavailable" in ready.json()["error"]["message"]
    search = client.post("/v1/search", json={"query": "overfitting"})
    assert search.status_code == 503
    assert search.json()["error"]["code"] == "store_unavailable"
    assert client.get("/health").status_code == 200


def test_a_really_corrupt_store_keeps_the_service_up(
    settings, embedder, monkeypatch, caplog
) -> None:
    """A truncated chroma.sqlite3 (rag.store raises StoreUnavailableError for it). Deleted
    HNSW files are not tried here: in one process Chroma keeps the index it loaded."""
    import api.app
    from rag.pipeline import RAG

    fill_tiny_store(settings, embedder)
    (settings.chroma_dir / "chroma.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)

    def load(s):
        rag = RAG(s, embedder=embedder)
        rag.warm_up()
        return rag

    monkeypatch.setattr(api.app, "load_rag", load)
    caplog.set_level(logging.INFO)
    with TestClient(api.app.create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503, ready.text
        assert "store_unavailable" in ready.json()["error"]["message"], ready.text
    start_up = [r for r in _errors(caplog) if r.name == "api.app"]
    assert len(start_up) == 1 and start_up[0].exc_info is None
