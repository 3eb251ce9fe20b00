"""Build the ``baseline`` collection: the user's page's own RAG recipe over the same loaded
documents as the main index, so reports show how far the project is ahead of it.

Recipe (from the page): ``RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=64,
separators=["\\n\\n", "\\n", ". ", " "])`` on each document's characters, all-MiniLM-L6-v2
embeddings of the bare chunk text, Chroma. Documents come from the ingest loaders (the text
the main index sees) — only splitting and indexing differ.

Incremental and idempotent like the main ingest: chunk ids derive from document id and
content, existing ids are never embedded again, stale ids are deleted after the new ones are
stored, and the corpus version is rewritten whenever it is not current.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import filelock
from tqdm import tqdm

from ingest.pipeline import IngestFailure, IngestSummary
from rag.errors import IngestLockedError
from rag.retrieval.baseline import baseline_collection_name
from rag.store import ChunkStore, corpus_version_of, make_chroma_client
from rag.types import Chunk, Document, make_chunk_id

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder

log = logging.getLogger(__name__)

CHUNK_SIZE = 512
CHUNK_OVERLAP = 64
SEPARATORS: tuple[str, ...] = ("\n\n", "\n", ". ", " ")


def split_baseline(doc: Document) -> list[Chunk]:
    """The document's chunks as the recipe makes them (character-based, no header)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, separators=list(SEPARATORS)
    )
    seen: Counter[str] = Counter()
    chunks: list[Chunk] = []
    meta = {
        "title": doc.title,
        "url": doc.url,
        "source": doc.source,
        "topic": str(doc.metadata.get("topic", "")),
        "doc_hash": doc.hash,
        "baseline": True,
    }
    for position, text in enumerate(splitter.split_text(doc.text)):
        occurrence = seen[text]
        seen[text] += 1
        chunk_id = make_chunk_id(doc.id, text, occurrence)
        chunks.append(Chunk(chunk_id, doc.id, text, "", position, dict(meta)))
    n = len(chunks)
    return [
        Chunk(c.id, c.doc_id, c.text, c.section, c.position, {**c.metadata, "n_chunks": n})
        for c in chunks
    ]


def baseline_store(settings: Settings, embedder: Embedder | None = None) -> ChunkStore:
    """The baseline collection (created empty when missing)."""
    from rag.embeddings import Embedder

    embedder = embedder or Embedder.from_settings(settings)
    return ChunkStore(
        make_chroma_client(settings),
        baseline_collection_name(settings),
        embedder,
        ef_search=settings.hnsw_ef_search,
    )


def build_baseline(
    settings: Settings,
    *,
    mirror: Path | None = None,
    sources_file: Path | None = None,
    store: ChunkStore | None = None,
    progress: bool = True,
) -> IngestSummary:
    """Bring the baseline collection up to date with the sources file (default
    ``settings.sources``; URLs resolve through ``mirror``, default ``settings.mirror``).
    Documents the sources no longer produce are removed; a source that fails keeps its
    chunks. Raises IngestLockedError when another baseline build holds the lock."""
    from ingest.pipeline import iter_documents
    from ingest.sources import load_sources

    sources_file = sources_file or settings.sources
    mirror = mirror if mirror is not None else settings.mirror
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(settings.data_dir / "baseline.lock"))
    try:
        lock.acquire(timeout=settings.ingest_lock_timeout_s)
    except filelock.Timeout as exc:
        raise IngestLockedError(f"another baseline build holds {lock.lock_file}") from exc
    try:
        started = time.perf_counter()
        store = store or baseline_store(settings)
        specs = load_sources(sources_file)
        items = iter_documents(
            specs, base_dir=sources_file.parent, settings=settings, mirror=mirror
        )
        return _build(store, items, settings, progress, started)
    finally:
        lock.release()


def _stored_by_doc(store: ChunkStore) -> dict[str, set[str]]:
    by_doc: dict[str, set[str]] = {}
    for chunk in store.iter_chunks():
        by_doc.setdefault(chunk.doc_id, set()).add(chunk.id)
    return by_doc


def _build(
    store: ChunkStore, items, settings: Settings, progress: bool, started: float
) -> IngestSummary:  # type: ignore[no-untyped-def]
    stored = _stored_by_doc(store)
    failed: list[IngestFailure] = []
    produced: set[str] = set()
    to_embed: list[Chunk] = []
    stale: list[str] = []
    unchanged = 0
    for item in items:
        if isinstance(item, IngestFailure):
            failed.append(item)
            continue
        if item.id in produced:
            continue
        produced.add(item.id)
        chunks = split_baseline(item)
        have = stored.get(item.id, set())
        new_ids = {c.id for c in chunks}
        to_embed.extend(c for c in chunks if c.id not in have)
        stale.extend(sorted(have - new_ids))
        unchanged += len(have & new_ids)
    protected = {f.doc_id for f in failed if f.doc_id}
    for doc_id, ids in stored.items():
        if doc_id not in produced and doc_id not in protected:
            stale.extend(sorted(ids))

    batch = settings.embed_batch_size
    bar = tqdm(
        total=len(to_embed), unit="chunk", desc="baseline", disable=not progress, file=sys.stderr
    )
    try:
        for start in range(0, len(to_embed), batch):
            chunks = to_embed[start : start + batch]
            vectors = store.embedder.embed_documents([c.text for c in chunks], batch_size=batch)
            store.upsert(chunks, vectors)
            bar.update(len(chunks))
    finally:
        bar.close()
    store.delete(stale)
    version = corpus_version_of(store.all_ids())
    if version != store.corpus_version():
        store.set_corpus_version(version)
    return IngestSummary(
        documents=len(produced),
        chunks_added=len(to_embed),
        chunks_removed=len(stale),
        chunks_unchanged=unchanged,
        failed=[{"source": f.source, "error": f.error} for f in failed],
        seconds=round(time.perf_counter() - started, 3),
    )


def update_baseline(
    settings: Settings, embedder: Embedder | None, mirror: Path | None, progress: bool
) -> list[str]:
    """Bring the baseline collection up to date (the builder ``mlrag eval run`` is given);
    returns the sources that failed."""
    summary = build_baseline(
        settings, mirror=mirror, store=baseline_store(settings, embedder), progress=progress
    )
    return list(summary.failed)
