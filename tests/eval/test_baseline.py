"""The baseline collection (the user's page's recipe) and the ``baseline`` retriever."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.baseline import CHUNK_SIZE, baseline_store, build_baseline, split_baseline
from rag.config import Settings
from rag.errors import EmptyIndexError
from rag.pipeline import RAG
from rag.retrieval.registry import RETRIEVER_NAMES
from rag.types import Document

PARAGRAPHS = [
    f"Paragraph {i} explains topic number {i}: " + " ".join(f"word{i}x{j}" for j in range(60)) + "."
    for i in range(6)
]


def write_corpus(folder: Path, paragraphs: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.md").write_text(
        "# Notes\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8"
    )
    sources = folder / "sources.toml"
    sources.write_text('[[source]]\npath = "notes.md"\ntopic = "notes"\n', encoding="utf-8")
    return sources


def test_split_follows_the_recipe() -> None:
    doc = Document(
        id="file:x.md",
        source="x.md",
        title="X",
        url="",
        text="\n\n".join(PARAGRAPHS * 2),
        metadata={"topic": "t"},
    )
    chunks = split_baseline(doc)
    assert len(chunks) > 4 and all(len(c.text) <= CHUNK_SIZE for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks)  # repeated texts get distinct ids
    assert chunks[0].topic == "t" and chunks[0].metadata["n_chunks"] == len(chunks)


def test_build_is_incremental_and_the_retriever_caps_k_at_4(tmp_path: Path, embedder) -> None:
    sources = write_corpus(tmp_path / "corpus", PARAGRAPHS)
    settings = Settings(data_dir=tmp_path / "data", sources=sources, torch_threads=1)
    rag = RAG(settings, embedder=embedder)
    assert "baseline" in RETRIEVER_NAMES
    with pytest.raises(EmptyIndexError, match="baseline"):
        rag.retriever("baseline").search("topic 3", 4)
    store = baseline_store(settings, embedder)
    first = build_baseline(settings, store=store, progress=False)
    assert first.documents == 1 and first.chunks_added == store.count() > 4 and not first.failed
    version = store.corpus_version()
    again = build_baseline(settings, store=store, progress=False)
    assert (
        again.chunks_added == 0 and again.chunks_removed == 0 and store.corpus_version() == version
    )
    # Change one paragraph: only its chunk(s) are re-embedded, stale ones go.
    write_corpus(
        tmp_path / "corpus", [*PARAGRAPHS[:-1], "A brand new closing paragraph about dropout."]
    )
    changed = build_baseline(settings, store=store, progress=False)
    assert 1 <= changed.chunks_added < first.chunks_added and changed.chunks_removed >= 1
    assert store.corpus_version() != version
    # The main collection stays empty; the baseline retriever reads its own collection.
    assert rag.store.count() == 0
    hits = rag.retriever("baseline").search("brand new closing paragraph about dropout", 10)
    assert len(hits) == 4 and hits[0].retriever == "baseline" and "dropout" in hits[0].chunk.text
