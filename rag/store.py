"""The chunk store: a Chroma collection (embedded ``PersistentClient`` under the data dir, or
a ``chroma run`` server when ``MLRAG_CHROMA_URL`` is set), cosine space, always with our own
embedding function. Embeddings are computed by :class:`rag.embeddings.Embedder` and passed in
explicitly so batching and progress stay under our control.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from rag.embeddings import Embedder, chroma_embedding_function
from rag.errors import ConfigError, StoreUnavailableError, StoreWriteError
from rag.types import Chunk

if TYPE_CHECKING:
    from pathlib import Path

    from rag.config import Settings

log = logging.getLogger(__name__)

# Chunk fields stored as Chroma metadata next to the chunk's own metadata.
_RESERVED = ("doc_id", "section", "position")
_PAGE = 1000  # rows per paged read; keeps memory and HTTP bodies bounded
_PROBE = 5  # neighbours asked of the index when a store is opened (see ChunkStore.check)
# Collection methods that write; every other call is a read.
_WRITES = frozenset({"add", "upsert", "update", "delete", "modify"})
_DISK_FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")
_READ_ONLY = ("readonly database", "read-only file system")


@dataclass(frozen=True)
class DocumentInfo:
    """What the store knows about one ingested document."""

    doc_id: str
    doc_hash: str
    n_chunks: int  # chunks the document should have (recorded at ingest)
    stored_chunks: int  # chunks actually present
    title: str
    source: str
    url: str
    topic: str

    @property
    def complete(self) -> bool:
        return self.stored_chunks == self.n_chunks


def _scalar_metadata(values: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """Chroma accepts only scalar metadata values; drop None and stringify the rest."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


def chunk_to_metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    """Flatten a chunk's fields into Chroma metadata."""
    return _scalar_metadata(
        {
            **chunk.metadata,
            "doc_id": chunk.doc_id,
            "section": chunk.section,
            "position": chunk.position,
        }
    )


def chunk_from_record(chunk_id: str, text: str, metadata: dict[str, Any] | None) -> Chunk:
    """Rebuild a :class:`Chunk` from a Chroma record."""
    meta = dict(metadata or {})
    doc_id = str(meta.pop("doc_id", ""))
    section = str(meta.pop("section", ""))
    position = int(meta.pop("position", 0))
    return Chunk(
        id=chunk_id, doc_id=doc_id, text=text, section=section, position=position, metadata=meta
    )


def corpus_version_of(ids: Iterable[str]) -> str:
    """A digest of the set of chunk ids: changes whenever any chunk is added or removed."""
    digest = hashlib.sha256()
    for chunk_id in sorted(ids):
        digest.update(chunk_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


# --- store failures -------------------------------------------------------------------------


def _store_failures() -> tuple[type[BaseException], ...]:
    """What a broken store raises: Chroma's internal errors (the Rust core reports SQLite
    and HNSW failures as these), SQLite errors and OS errors."""
    from chromadb.errors import InternalError

    return (InternalError, sqlite3.DatabaseError, OSError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def store_location(settings: Settings) -> str:
    """Where the index lives, for messages: the server URL or the embedded store's folder."""
    return settings.chroma_url or str(settings.chroma_dir)


def unavailable(
    location: str, exc: BaseException, *, server: bool = False
) -> StoreUnavailableError:
    """The one-line error for a store that cannot be opened or read."""
    if server:
        return StoreUnavailableError(
            f"the Chroma server at {location} failed: {_one_line(exc)}; check the server "
            "(its logs and volume)"
        )
    return StoreUnavailableError(
        f"the index at {location} cannot be read ({_one_line(exc)}); it is corrupt or "
        "incomplete: rebuild it with `mlrag ingest --rebuild` (a backup can also be restored "
        "with `mlrag ingest --restore FILE`)"
    )


def write_failure(location: str, exc: BaseException) -> StoreWriteError:
    """The one-line error for a failed write, naming the cause (disk full, read-only, ...)."""
    text = _one_line(exc)
    lowered = text.lower()
    if (isinstance(exc, OSError) and exc.errno in {errno.ENOSPC, errno.EDQUOT}) or any(
        marker in lowered for marker in _DISK_FULL
    ):
        cause = "disk full"
    elif (isinstance(exc, OSError) and exc.errno == errno.EROFS) or any(
        marker in lowered for marker in _READ_ONLY
    ):
        cause = "read-only file system"
    else:
        cause = "write failed"
    return StoreWriteError(
        f"cannot write to the index at {location}: {cause} ({text}); fix that and rerun "
        "`mlrag ingest`, which resumes where this run stopped"
    )


class _GuardedCollection:
    """A Chroma collection whose failures surface as project errors: a failed read raises
    :class:`StoreUnavailableError`, a failed write :class:`StoreWriteError`; anything else
    (bad arguments, our bugs) passes through unchanged."""

    def __init__(self, collection: Any, location: str, server: bool) -> None:
        self._collection = collection
        self._location = location
        self._server = server

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if not callable(attribute):
            return attribute
        return self._guard(name, attribute)

    def _guard(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        failures = _store_failures()

        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except failures as exc:
                if name in _WRITES:
                    raise write_failure(self._location, exc) from exc
                raise unavailable(self._location, exc, server=self._server) from exc

        return guarded


# --- the client ------------------------------------------------------------------------------


def make_chroma_client(settings: Settings) -> Any:
    """An embedded persistent client, or an HTTP client when ``chroma_url`` is set. Raises
    :class:`StoreUnavailableError` when the embedded store cannot be opened (corrupt)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        parsed = urlparse(settings.chroma_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                f"MLRAG_CHROMA_URL must be http(s)://host:port, got {settings.chroma_url!r}"
            )
        return chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 80),
            ssl=parsed.scheme == "https",
            settings=chroma_settings,
        )
    return open_embedded_client(settings.chroma_dir)


def open_embedded_client(path: Path) -> Any:
    """An embedded persistent client on ``path`` (created when missing); raises
    :class:`StoreUnavailableError` when the store there cannot be opened."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    try:
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
        )
    except _store_failures() as exc:
        raise unavailable(str(path), exc) from exc


def release_embedded_client(path: Path) -> None:
    """Forget Chroma's cached embedded client of ``path`` (Chroma keeps one system per path
    per process), so the folder can be moved or replaced and reopened fresh."""
    from chromadb.api.shared_system_client import SharedSystemClient

    identifier = str(path)
    SharedSystemClient._identifier_to_refcount.pop(identifier, None)
    system = SharedSystemClient._identifier_to_system.pop(identifier, None)
    if system is not None:
        try:
            system.stop()
        except Exception:  # noqa: BLE001 - stopping a broken store must not hide the real error
            log.debug("stopping the Chroma system of %s failed", path, exc_info=True)


def _set_ef_search(collection: Any, ef_search: int) -> None:
    """Give an existing collection the configured HNSW ``ef_search`` (a collection keeps the
    configuration it was created with). Chroma reads it when a process first queries the
    collection, so it applies from the next process when this one has queried already.
    A store that cannot take the change (read-only files, an older server) is searched as it
    is, with a warning: a search setting must not stop the service."""
    try:
        hnsw = (collection.configuration or {}).get("hnsw") or {}
        if hnsw.get("ef_search") != ef_search:
            log.info("setting HNSW ef_search of %s to %d", collection.name, ef_search)
            collection.modify(configuration={"hnsw": {"ef_search": ef_search}})
    except Exception as exc:  # noqa: BLE001 - any failure leaves the collection's own value
        log.warning(
            "could not set HNSW ef_search of %s to %d (%s); searching with its stored value",
            getattr(collection, "name", "the collection"),
            ef_search,
            exc,
        )


class ChunkStore:
    """Chunks with their embeddings in one Chroma collection."""

    VERSION_KEY = "corpus_version"

    def __init__(
        self,
        client: Any,
        collection_name: str,
        embedder: Embedder,
        *,
        location: str = "the Chroma store",
        server: bool = False,
        ef_search: int | None = None,
    ) -> None:
        """Open (or create) the collection, set its HNSW ``ef_search`` when given, and
        :meth:`check` that it can be read. Raises :class:`StoreUnavailableError` when it
        cannot."""
        self.client = client
        self.embedder = embedder
        self.collection_name = collection_name
        self.location = location  # named in error messages
        self.server = server
        try:
            hnsw: dict[str, Any] = {"space": "cosine"}
            if ef_search is not None:
                hnsw["ef_search"] = ef_search
            raw = client.get_or_create_collection(
                name=collection_name,
                embedding_function=chroma_embedding_function(embedder),
                configuration={"hnsw": hnsw},
            )
            if ef_search is not None:
                _set_ef_search(raw, ef_search)  # before the first query loads the index
        except _store_failures() as exc:
            raise unavailable(location, exc, server=server) from exc
        self.collection = _GuardedCollection(raw, location, server)
        self.check()

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder | None = None) -> ChunkStore:
        embedder = embedder or Embedder.from_settings(settings)
        return cls(
            make_chroma_client(settings),
            settings.collection,
            embedder,
            location=store_location(settings),
            server=bool(settings.chroma_url),
            ef_search=settings.hnsw_ef_search,
        )

    def close(self) -> None:
        """Release the client (an embedded store's files can then be moved or reopened)."""
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def check(self) -> None:
        """Read the store end to end (count, one stored vector, a nearest-neighbour query)
        and raise :class:`StoreUnavailableError` if any part fails or the vector index
        answers fewer neighbours than the collection holds: that is what a truncated
        ``chroma.sqlite3`` or deleted HNSW segment files look like."""
        total = self.count()
        if total == 0:
            return
        sample = self.collection.get(limit=1, include=["embeddings"])
        vectors = sample.get("embeddings")
        if vectors is None or len(vectors) == 0:
            raise unavailable(
                self.location, RuntimeError("a stored chunk has no vector"), server=self.server
            )
        wanted = min(total, _PROBE)
        found = self.collection.query(query_embeddings=[vectors[0]], n_results=wanted, include=[])
        if len(found["ids"][0]) < wanted:
            raise unavailable(
                self.location,
                RuntimeError(
                    f"the vector index returned {len(found['ids'][0])} of {wanted} neighbours "
                    f"for a collection of {total} chunks"
                ),
                server=self.server,
            )

    # --- writing -------------------------------------------------------------------------
    def upsert(self, chunks: list[Chunk], embeddings: np.ndarray) -> None:
        """Insert or replace chunks with precomputed embeddings (indexed text = header + text)."""
        if not chunks:
            return
        self.collection.upsert(
            ids=[c.id for c in chunks],
            documents=[c.text for c in chunks],
            metadatas=[chunk_to_metadata(c) for c in chunks],
            embeddings=[row.tolist() for row in embeddings],
        )

    def update_metadata(self, chunks: list[Chunk]) -> None:
        """Refresh metadata (position, section, doc hash) of chunks whose text is unchanged."""
        if chunks:
            self.collection.update(
                ids=[c.id for c in chunks], metadatas=[chunk_to_metadata(c) for c in chunks]
            )

    def delete(self, ids: list[str]) -> None:
        """Remove chunks by id (missing ids are ignored)."""
        for start in range(0, len(ids), _PAGE):
            self.collection.delete(ids=ids[start : start + _PAGE])

    def set_corpus_version(self, version: str) -> None:
        """Record the corpus version in the collection metadata (read by lexical indexes)."""
        meta = {
            k: v for k, v in (self.collection.metadata or {}).items() if not k.startswith("hnsw:")
        }
        meta[self.VERSION_KEY] = version
        self.collection.modify(metadata=meta)

    # --- reading -------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.collection.count())

    def corpus_version(self) -> str:
        """The corpus version as currently recorded ("" when nothing was ever ingested).

        Re-reads the collection from Chroma: another process (or another replica sharing the
        server) may have ingested since this store was opened, and the collection object
        caches the metadata it was opened with."""
        try:
            fresh = self.client.get_collection(
                self.collection_name, embedding_function=chroma_embedding_function(self.embedder)
            )
        except _store_failures() as exc:
            raise unavailable(self.location, exc, server=self.server) from exc
        return str((fresh.metadata or {}).get(self.VERSION_KEY, ""))

    def all_ids(self) -> list[str]:
        ids: list[str] = []
        offset = 0
        while True:
            page = self.collection.get(include=[], limit=_PAGE, offset=offset)
            ids.extend(page["ids"])
            if len(page["ids"]) < _PAGE:
                return ids
            offset += _PAGE

    def iter_chunks(self, where: dict[str, Any] | None = None) -> Iterator[Chunk]:
        """Every stored chunk (optionally filtered), read in pages."""
        offset = 0
        while True:
            page = self.collection.get(
                where=where, include=["documents", "metadatas"], limit=_PAGE, offset=offset
            )
            for chunk_id, text, meta in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            ):
                yield chunk_from_record(chunk_id, text, meta)
            if len(page["ids"]) < _PAGE:
                return
            offset += _PAGE

    def get_chunks(self, ids: list[str]) -> list[Chunk]:
        """Chunks by id, in the order asked (missing ids are skipped)."""
        if not ids:
            return []
        page = self.collection.get(ids=ids, include=["documents", "metadatas"])
        by_id = {
            cid: chunk_from_record(cid, text, meta)
            for cid, text, meta in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            )
        }
        return [by_id[i] for i in ids if i in by_id]

    def chunk_ids_for(self, doc_id: str) -> list[str]:
        return list(self.collection.get(where={"doc_id": doc_id}, include=[])["ids"])

    def documents(self) -> dict[str, DocumentInfo]:
        """Per-document summary built from chunk metadata."""
        docs: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
            for meta in page["metadatas"]:
                meta = meta or {}
                doc_id = str(meta.get("doc_id", ""))
                entry = docs.setdefault(doc_id, {"meta": meta, "stored": 0})
                entry["stored"] += 1
            if len(page["ids"]) < _PAGE:
                break
            offset += _PAGE
        return {
            doc_id: DocumentInfo(
                doc_id=doc_id,
                doc_hash=str(e["meta"].get("doc_hash", "")),
                n_chunks=int(e["meta"].get("n_chunks", e["stored"])),
                stored_chunks=e["stored"],
                title=str(e["meta"].get("title", "")),
                source=str(e["meta"].get("source", "")),
                url=str(e["meta"].get("url", "")),
                topic=str(e["meta"].get("topic", "")),
            )
            for doc_id, e in docs.items()
        }

    def query(
        self, vector: np.ndarray, n: int, where: dict[str, Any] | None = None
    ) -> list[tuple[Chunk, float]]:
        """Nearest chunks to ``vector`` with cosine similarity (1 - cosine distance)."""
        if n <= 0:
            return []
        result = self.collection.query(
            query_embeddings=[vector.tolist()],
            n_results=n,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        return [
            (chunk_from_record(cid, text, meta), 1.0 - float(dist))
            for cid, text, meta, dist in zip(
                result["ids"][0],
                result["documents"][0],
                result["metadatas"][0],
                result["distances"][0],
                strict=True,
            )
        ]
