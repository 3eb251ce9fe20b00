"""A broken Chroma store surfaces as one clear project error, never a raw traceback:
unreadable → StoreUnavailableError (naming the path and `mlrag ingest --rebuild`), unwritable
→ StoreWriteError (naming the cause)."""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import StoreUnavailableError, StoreWriteError
from rag.store import ChunkStore, release_embedded_client, write_failure
from rag.types import Chunk

DIM = 384  # the packaged MiniLM's width


def build_synthetic_store(settings: Settings, embedder, n: int) -> int:
    """``n`` chunks with random vectors (no model run); more than ~1000 makes Chroma write
    its HNSW segment files. Closes the store so the files can be damaged and reopened."""
    store = ChunkStore.from_settings(settings, embedder)
    rng = np.random.default_rng(0)
    chunks = [Chunk(f"c{i}", f"doc{i % 7}", f"text {i}", "s", i, {}) for i in range(n)]
    for start in range(0, n, 500):
        part = chunks[start : start + 500]
        store.upsert(part, rng.random((len(part), DIM)).astype(np.float32))
    count = store.count()
    store.close()
    release_embedded_client(settings.chroma_dir)
    return count


def truncate_sqlite(chroma_dir: Path) -> None:
    path = chroma_dir / "chroma.sqlite3"
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 3)


def delete_hnsw(chroma_dir: Path, whole_folder: bool) -> None:
    segments = [p for p in chroma_dir.iterdir() if p.is_dir()]
    assert segments, "no HNSW segment folder was written"
    for segment in segments:
        if whole_folder:
            shutil.rmtree(segment)
        else:
            (segment / "data_level0.bin").unlink()


CORRUPTIONS = {
    "truncated-sqlite": truncate_sqlite,
    "hnsw-file-deleted": lambda d: delete_hnsw(d, whole_folder=False),
    "hnsw-folder-deleted": lambda d: delete_hnsw(d, whole_folder=True),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_store_raises_store_unavailable(settings: Settings, embedder, kind: str) -> None:
    assert build_synthetic_store(settings, embedder, 1100) == 1100
    CORRUPTIONS[kind](settings.chroma_dir)
    with pytest.raises(StoreUnavailableError) as err:
        ChunkStore.from_settings(settings, embedder)
    message = str(err.value)
    assert str(settings.chroma_dir) in message and "mlrag ingest --rebuild" in message
    assert "\n" not in message
    release_embedded_client(settings.chroma_dir)


def test_healthy_store_opens(settings: Settings, embedder) -> None:
    build_synthetic_store(settings, embedder, 30)
    assert ChunkStore.from_settings(settings, embedder).count() == 30


def test_read_failure_after_open_is_store_unavailable(
    settings: Settings, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.api.models.Collection import Collection
    from chromadb.errors import InternalError

    store = ChunkStore.from_settings(settings, embedder)

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise InternalError("Error loading hnsw index")

    monkeypatch.setattr(Collection, "query", broken)
    with pytest.raises(StoreUnavailableError, match="Error loading hnsw index"):
        store.query(np.zeros(DIM, dtype=np.float32), 3)


def test_disk_full_write_is_store_write_error(
    settings: Settings, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.api.models.Collection import Collection

    store = ChunkStore.from_settings(settings, embedder)

    def full(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Collection, "upsert", full)
    chunk = Chunk("c0", "d", "t", "s", 0, {})
    with pytest.raises(StoreWriteError, match="disk full") as err:
        store.upsert([chunk], np.zeros((1, DIM), dtype=np.float32))
    assert str(settings.chroma_dir) in str(err.value)


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        (sqlite3.OperationalError("database or disk is full"), "disk full"),
        (
            RuntimeError("error returned from database: (code: 13) database or disk is full"),
            "disk full",
        ),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only"),
        (OSError(errno.EIO, "Input/output error"), "write failed"),
    ],
)
def test_write_failure_names_the_cause(exc: BaseException, cause: str) -> None:
    assert cause in str(write_failure("/data/chroma", exc))
