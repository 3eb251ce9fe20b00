"""``DELETE /v1/sources/{doc_id}`` (admin): removes one document's chunks from a real store,
updates the corpus version, 404s for unknown ids and 409s while an ingest holds the lock."""

from __future__ import annotations

import pytest

from api.auth import hash_key
from tests.api.conftest import fill_tiny_store

ADMIN, USER = "removal-admin-key", "removal-user-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def store_client(make_client, settings, embedder):
    """An app over a private copy of the tiny corpus (this test changes it)."""
    from rag.pipeline import RAG

    fill_tiny_store(settings, embedder)
    rag = RAG(settings, embedder=embedder)
    client = make_client(
        rag=rag, admin_key_hashes=[hash_key(ADMIN)], api_key_hashes=[hash_key(USER)]
    )
    return client, rag


def doc_ids(client) -> set[str]:
    documents = client.get("/v1/sources", headers=AUTH).json()["documents"]
    return {d["doc_id"] for d in documents}


def test_an_admin_removes_a_document(store_client) -> None:
    client, rag = store_client
    version_before = rag.store.corpus_version()
    assert "overfitting" in doc_ids(client)
    response = client.delete("/v1/sources/overfitting", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "doc_id": "overfitting",
        "chunks_removed": 2,
        "status": "removed",
    }
    assert "overfitting" not in doc_ids(client)
    assert rag.store.chunk_ids_for("overfitting") == []
    assert rag.store.corpus_version() not in ("", version_before)
    hits = client.post(
        "/v1/search",
        json={"query": "overfitting noise training data", "retriever": "dense", "k": 10},
        headers=AUTH,
    ).json()["hits"]
    assert hits and all(h["doc_id"] != "overfitting" for h in hits)
    again = client.delete("/v1/sources/overfitting", headers=AUTH)
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def test_ids_with_slashes_and_colons_work(store_client, settings, embedder) -> None:
    from rag.store import ChunkStore
    from rag.types import Chunk, make_chunk_id

    client, rag = store_client
    doc_id = "url:https://example.org/guide/page.html"
    text = "Weight decay adds a penalty on the size of the weights to the loss."
    chunk = Chunk(
        id=make_chunk_id(doc_id, text),
        doc_id=doc_id,
        text=text,
        metadata={"title": "Weight decay", "url": "https://example.org/guide/page.html"},
    )
    store = ChunkStore.from_settings(settings, embedder)
    store.upsert([chunk], embedder.embed_documents([chunk.indexed_text]))
    response = client.delete(f"/v1/sources/{doc_id}", headers=AUTH)
    assert response.status_code == 200 and response.json()["doc_id"] == doc_id
    assert doc_id not in doc_ids(client)


def test_unknown_documents_are_404(store_client) -> None:
    client, _ = store_client
    response = client.delete("/v1/sources/no-such-document", headers=AUTH)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_removal_needs_an_admin_key(store_client) -> None:
    client, _ = store_client
    assert client.delete("/v1/sources/overfitting").status_code == 401
    user = client.delete("/v1/sources/overfitting", headers={"Authorization": f"Bearer {USER}"})
    assert user.status_code == 403
    assert "overfitting" in doc_ids(client)


def test_removal_waits_for_no_ingest(store_client, settings) -> None:
    from ingest.pipeline import ingest_lock

    client, _ = store_client
    lock = ingest_lock(settings)
    lock.acquire()
    try:
        response = client.delete("/v1/sources/overfitting", headers=AUTH)
    finally:
        lock.release()
    assert response.status_code == 409 and response.json()["error"]["code"] == "ingest_locked"
    assert "overfitting" in doc_ids(client)
