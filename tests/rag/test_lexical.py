"""The BM25 lexical index: tokenisation, persistence, freshness across store objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rag.lexical as lexical
from rag.config import Settings
from rag.errors import EmptyIndexError, InvalidInputError
from rag.lexical import LexicalIndex, lexical_index_dir, tokenize
from rag.store import ChunkStore, corpus_version_of
from rag.types import Chunk
from tests.rag.test_retrievers import fill_store, make_chunks


def test_tokenize_keeps_identifiers_and_parts() -> None:
    tokens = tokenize("Call np.linalg.eig, then fit_transform; PR-AUC beats ROC-AUC.")
    for token in (
        "np.linalg.eig",
        "np",
        "linalg",
        "eig",
        "fit_transform",
        "fit",
        "transform",
        "pr-auc",
        "pr",
        "auc",
        "roc-auc",
    ):
        assert token in tokens
    assert tokenize("The model and the data") == ["model", "data"]  # stopwords removed
    assert tokenize("Overfitting overfits") == ["overfitting", "overfits"]  # no stemming
    assert tokenize("") == []


@pytest.fixture
def store(settings: Settings, embedder) -> ChunkStore:
    store = ChunkStore.from_settings(settings, embedder)
    fill_store(store, embedder, make_chunks())
    return store


def test_build_then_load_without_reading_the_store(
    settings: Settings, store: ChunkStore, monkeypatch
) -> None:
    index_dir = lexical_index_dir(settings)
    built = LexicalIndex.load_or_build(store, index_dir)
    assert len(built) == len(make_chunks())
    current = (index_dir / "CURRENT").read_text().strip()
    meta = json.loads((index_dir / current / "meta.json").read_text())
    assert meta["corpus_version"] == store.corpus_version()

    def boom(*args, **kwargs):
        raise AssertionError("a matching saved index must not be rebuilt")

    monkeypatch.setattr(store, "iter_chunks", boom)
    loaded = LexicalIndex.load_or_build(store, index_dir)
    assert len(loaded) == len(built)
    query = "np.linalg.eig eigenvalues"
    assert [(c.id, round(s, 5)) for c, s in loaded.search(query, 3)] == [
        (c.id, round(s, 5)) for c, s in built.search(query, 3)
    ]
    chunk, _ = loaded.search(query, 1)[0]
    assert (
        chunk.title == "numpy.linalg" and chunk.topic == "numpy" and chunk.section == "Eigenvalues"
    )


def test_stale_or_corrupt_index_is_rebuilt(settings: Settings, store: ChunkStore, embedder) -> None:
    index_dir = lexical_index_dir(settings)
    first = LexicalIndex.load_or_build(store, index_dir)
    first_dir = (index_dir / "CURRENT").read_text().strip()
    extra = Chunk(
        id="new#1",
        doc_id="new",
        text="Label smoothing softens one-hot targets.",
        metadata={"topic": "pytorch"},
    )
    fill_store(store, embedder, [extra])
    second = LexicalIndex.load_or_build(store, index_dir)
    assert len(second) == len(first) + 1
    second_dir = (index_dir / "CURRENT").read_text().strip()
    assert second_dir != first_dir
    assert not (index_dir / first_dir).exists()  # superseded versions are cleaned up
    (index_dir / second_dir / "chunks.jsonl").write_text("{not json\n")
    third = LexicalIndex.load_or_build(store, index_dir)
    assert len(third) == len(second)
    assert third.search("smoothing", 1)[0][0].id == "new#1"


def test_ensure_fresh_sees_changes_made_through_another_store(
    settings: Settings, store: ChunkStore, embedder, monkeypatch
) -> None:
    index = LexicalIndex.load_or_build(store, lexical_index_dir(settings), freshness_interval_s=60)
    assert index.search("smoothing", 3) == []
    # Another replica / the ingest process writes through its own client object.
    other = ChunkStore.from_settings(settings, embedder)
    extra = Chunk(
        id="new#1",
        doc_id="new",
        text="Label smoothing softens one-hot targets.",
        metadata={"topic": "pytorch"},
    )
    fill_store(other, embedder, [extra])

    calls = []
    real_read = lexical.read_corpus_version
    monkeypatch.setattr(lexical, "read_corpus_version", lambda s: calls.append(1) or real_read(s))
    index.ensure_fresh()  # within the interval: no store round-trip at all
    assert calls == [] and index.search("smoothing", 3) == []

    index.freshness_interval_s = 0.0
    index.ensure_fresh()
    assert calls and index.version == other.corpus_version()
    assert index.search("smoothing", 3)[0][0].id == "new#1"
    assert len(index) == len(make_chunks()) + 1


def test_filters_and_k(settings: Settings, store: ChunkStore) -> None:
    index = LexicalIndex.load_or_build(store, lexical_index_dir(settings))
    assert len(index.search("data", 2)) == 2
    numpy_only = index.search("matrix data arrays", 10, {"topic": "numpy"})
    assert numpy_only and all(c.topic == "numpy" for c, _ in numpy_only)
    assert index.search("matrix", 10, {"topic": "no-such-topic"}) == []
    with pytest.raises(InvalidInputError):
        index.search("matrix", 10, {"colour": "red"})


def test_empty_store_gives_empty_index(settings: Settings, embedder) -> None:
    empty = ChunkStore.from_settings(settings, embedder)
    index = LexicalIndex.load_or_build(empty, lexical_index_dir(settings))
    assert len(index) == 0
    with pytest.raises(EmptyIndexError):
        index.search("anything", 3)


def test_unversioned_collection_is_indexed(settings: Settings, embedder, tmp_path: Path) -> None:
    store = ChunkStore.from_settings(settings, embedder)
    chunks = make_chunks()[:3]
    store.upsert(chunks, embedder.embed_documents([c.indexed_text for c in chunks]))
    index = LexicalIndex.load_or_build(store, tmp_path / "lex")
    assert len(index) == 3
    assert index.version.startswith("unversioned-")
    assert corpus_version_of(store.all_ids()) != index.version


def test_searches_keep_working_while_a_refresh_builds(
    settings: Settings, store: ChunkStore, embedder, monkeypatch
) -> None:
    import threading

    index = LexicalIndex.load_or_build(store, lexical_index_dir(settings), freshness_interval_s=0.0)
    extra = Chunk(id="new#1", doc_id="new", text="Label smoothing softens one-hot targets.")
    fill_store(store, embedder, [extra])
    started, release = threading.Event(), threading.Event()
    real_build = lexical._load_or_build_parts

    def slow_build(*args):
        started.set()
        assert release.wait(30)
        return real_build(*args)

    monkeypatch.setattr(lexical, "_load_or_build_parts", slow_build)
    refresher = threading.Thread(target=index.ensure_fresh)
    refresher.start()
    assert started.wait(30)
    index.ensure_fresh()  # a second caller does not wait for (or repeat) the running refresh
    assert index.search("smoothing", 3) == []  # the old index still answers
    assert index.search("np.linalg.eig", 1)[0][0].section == "Eigenvalues"
    release.set()
    refresher.join(30)
    assert index.search("smoothing", 3)[0][0].id == "new#1"


def test_document_frequencies_count_chunks_per_token(settings: Settings, store: ChunkStore) -> None:
    index = LexicalIndex.load_or_build(store, lexical_index_dir(settings))
    df, n_docs = index.document_frequencies()
    chunks = make_chunks()
    assert n_docs == len(chunks)
    for token in ("eig", "overfitting"):
        expected = sum(token in tokenize(c.indexed_text) for c in chunks)
        assert expected > 0 and df[token] == expected
