"""``mlrag ingest --rebuild``: re-ingest every source into a fresh embedded store beside the
live one and swap it in only once it is complete.

The live store is never opened (it may be the corrupt thing being replaced) and never left
missing: the new store is built in ``<data_dir>/chroma.rebuild``; when the ingest finished
with no failed source, two renames put it in place (``chroma`` → ``chroma.old``,
``chroma.rebuild`` → ``chroma``) and the old one is deleted. Any failure before the swap
leaves the live store as it was. A running ``mlrag serve`` keeps answering from the store it
opened until it is restarted.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError

if TYPE_CHECKING:
    from ingest.pipeline import IngestSummary
    from rag.config import Settings

log = logging.getLogger(__name__)

REBUILD_DIR = "chroma.rebuild"  # the store being built, beside the live one
OLD_DIR = "chroma.old"  # the replaced store, between the two renames of a swap


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did: the ingest summary and whether the new store went live."""

    summary: IngestSummary
    swapped: bool


def rebuild_index(
    settings: Settings,
    *,
    sources_file: Path | None = None,
    mirror: Path | None = None,
    depth: int | None = None,
    progress: bool = True,
) -> RebuildResult:
    """Ingest the sources into a fresh store and make it the live one when every source
    ingested. Holds the ingest lock throughout. Raises :class:`ConfigError` with a Chroma
    server (rebuild there by deleting the collection and ingesting again, or restore the
    server's volume), :class:`~rag.errors.IngestLockedError`, and the store errors of an
    ingest (:class:`~rag.errors.StoreWriteError` when the disk fills up); in every such case
    the live store is untouched."""
    from ingest.pipeline import acquire_ingest_lock, run_ingest
    from rag.embeddings import Embedder
    from rag.store import ChunkStore, open_embedded_client, release_embedded_client

    if settings.chroma_url:
        raise ConfigError(
            "--rebuild works on the embedded store only; with a Chroma server "
            "(MLRAG_CHROMA_URL) restore the server's volume, or delete the collection and "
            "run `mlrag ingest` again"
        )
    lock = acquire_ingest_lock(settings)
    try:
        target = settings.data_dir / REBUILD_DIR
        _remove(target)  # the leftovers of a rebuild that failed
        store = ChunkStore(
            open_embedded_client(target),
            settings.collection,
            Embedder.from_settings(settings),
            location=str(target),
            ef_search=settings.hnsw_ef_search,
        )
        try:
            summary = run_ingest(
                settings,
                sources_file=sources_file,
                mirror=mirror,
                depth=depth,
                progress=progress,
                store=store,
                locked=True,
            )
        except BaseException:
            store.close()
            _remove(target)
            raise
        store.close()
        release_embedded_client(target)
        if summary.failed:
            # A rebuild missing some sources must not replace a store that has them.
            _remove(target)
            return RebuildResult(summary, swapped=False)
        swap_in(settings, target)
        return RebuildResult(summary, swapped=True)
    finally:
        lock.release()


def swap_in(settings: Settings, new_store: Path) -> None:
    """Make ``new_store`` the live embedded store (``settings.chroma_dir``) and delete the
    old one. The caller holds the ingest lock."""
    from rag.store import release_embedded_client

    live = settings.chroma_dir
    old = settings.data_dir / OLD_DIR
    release_embedded_client(live)
    _remove(old)
    if live.exists():
        live.rename(old)
    new_store.rename(live)
    _remove(old)


def _remove(path: Path) -> None:
    """Delete a store folder this process may have open (forgetting Chroma's cache of it)."""
    from rag.store import release_embedded_client

    release_embedded_client(path)
    if path.exists():
        shutil.rmtree(path)
