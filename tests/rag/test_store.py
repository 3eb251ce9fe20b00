"""The Chroma store's vector search: its HNSW ``ef_search`` comes from the settings, also for a
collection created before the setting existed, and then finds the exact nearest chunks."""

from __future__ import annotations

import numpy as np

from rag.config import Settings
from rag.store import ChunkStore, release_embedded_client
from rag.types import Chunk

DIM = 384


def _fill(settings: Settings, embedder, vectors: np.ndarray) -> None:
    store = ChunkStore.from_settings(settings, embedder)
    chunks = [Chunk(f"c{i}", f"doc{i % 7}", f"text {i}", "s", i, {}) for i in range(len(vectors))]
    for start in range(0, len(chunks), 500):
        store.upsert(chunks[start : start + 500], vectors[start : start + 500])
    store.close()
    release_embedded_client(settings.chroma_dir)


def _ef_search(store: ChunkStore) -> int:
    return store.collection.configuration["hnsw"]["ef_search"]


def test_an_older_collection_gets_the_configured_ef_search_and_exact_neighbours(
    tmp_path, embedder
) -> None:
    # Chroma's default ef_search (100) returned 78-96 of the exact 100 nearest chunks on this
    # corpus, a different set in each process; the collection keeps the value it was made with.
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    old = Settings(data_dir=tmp_path / "data", torch_threads=1, hnsw_ef_search=100)
    _fill(old, embedder, vectors)

    settings = old.model_copy(update={"hnsw_ef_search": 1000})
    store = ChunkStore.from_settings(settings, embedder)
    assert _ef_search(store) == 1000
    for query in rng.normal(size=(5, DIM)).astype(np.float32):
        query /= np.linalg.norm(query)
        exact = {f"c{i}" for i in np.argsort(-(vectors @ query))[:100]}
        found = store.collection.query(query_embeddings=[query.tolist()], n_results=100)
        assert len(exact & set(found["ids"][0])) >= 99
    store.close()
    release_embedded_client(settings.chroma_dir)


def test_a_new_collection_is_created_with_the_configured_ef_search(tmp_path, embedder) -> None:
    settings = Settings(data_dir=tmp_path / "data", torch_threads=1, hnsw_ef_search=321)
    store = ChunkStore.from_settings(settings, embedder)
    assert _ef_search(store) == 321
    store.close()
    release_embedded_client(settings.chroma_dir)


def test_a_store_that_cannot_take_the_setting_is_searched_as_it_is(caplog) -> None:
    # A read-only data dir (or an older Chroma server) must not stop the service over a
    # search setting: the collection keeps its own value and a warning says so.
    from rag.store import _set_ef_search

    class ReadOnly:
        name = "mlrag"
        configuration = {"hnsw": {"ef_search": 100}}

        def modify(self, **_: object) -> None:
            raise PermissionError("attempt to write a readonly database")

    with caplog.at_level("WARNING", logger="rag.store"):
        _set_ef_search(ReadOnly(), 1000)
    assert "could not set HNSW ef_search of mlrag to 1000" in caplog.text
