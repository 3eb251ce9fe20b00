"""Removing one document from the index over HTTP (``DELETE /v1/sources/{doc_id}``): the same
store operations ``mlrag ingest --prune`` uses, under the same ingest lock."""

from __future__ import annotations

from typing import Any

import filelock

from rag.config import Settings
from rag.errors import IngestLockedError


def remove_document(settings: Settings, store: Any, doc_id: str) -> int:
    """Delete every chunk of ``doc_id`` and record the new corpus version (so BM25 and other
    derived indexes refresh); the number of chunks removed, 0 when the id is unknown.
    Raises :class:`IngestLockedError` while an ingest holds the data dir's lock."""
    from ingest.pipeline import corpus_state_version, ingest_lock

    lock = ingest_lock(settings)
    try:
        lock.acquire(timeout=settings.ingest_lock_timeout_s)
    except filelock.Timeout as exc:
        raise IngestLockedError(
            f"an ingest holds {lock.lock_file}; remove the document when it has finished"
        ) from exc
    try:
        ids = store.chunk_ids_for(doc_id)
        if not ids:
            return 0
        store.delete(ids)
        version = corpus_state_version(store)
        if version != store.corpus_version():
            store.set_corpus_version(version)
        return len(ids)
    finally:
        lock.release()
