"""BM25 index (bm25s) derived from the chunk store, rebuildable at any time.

The index is a cache of the Chroma collection: it records the corpus version it was built
from and is rebuilt whenever the store's version differs. On disk it lives in versioned
sub-folders of ``index_dir`` with a ``CURRENT`` file naming the live one; a build writes a
new folder and then replaces ``CURRENT`` atomically, so readers (other processes, other API
replicas) never see a half-written index.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import EmptyIndexError
from rag.retrieval.base import Filters
from rag.retrieval.filters import FILTER_KEYS, NormalizedFilters, chunk_field, normalize_filters
from rag.types import Chunk

if TYPE_CHECKING:
    import bm25s

    from rag.config import Settings
    from rag.store import ChunkStore

log = logging.getLogger(__name__)

# Bump when tokenisation or the on-disk layout changes: older indexes are then rebuilt.
FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
UNVERSIONED = "unversioned-"
UNVERSIONED_REFRESH_S = 30.0
META_FILE = "meta.json"
CHUNKS_FILE = "chunks.jsonl"
BM25_DIR = "bm25"

# Identifier-like runs: words joined by ".", "_" or "-" (np.linalg.eig, fit_transform, PR-AUC).
_COMPOUND = re.compile(r"[a-z0-9]+(?:[._\-][a-z0-9]+)*")
_PART = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """BM25 tokens of ``text``: lower-cased alphanumeric words without English stopwords;
    an identifier such as ``np.linalg.eig`` yields the whole identifier and its parts."""
    stop = _stopwords()
    tokens: list[str] = []
    for compound in _COMPOUND.findall(text.lower()):
        parts = _PART.findall(compound)
        if len(parts) > 1:
            tokens.append(compound)
        tokens.extend(p for p in parts if p not in stop)
    return tokens


def lexical_index_dir(settings: Settings) -> Path:
    """Where the lexical index of the configured collection lives."""
    return settings.data_dir / "lexical" / settings.collection


def read_corpus_version(store: ChunkStore) -> str:
    """The corpus version as currently recorded in Chroma (fresh, see
    :meth:`ChunkStore.corpus_version`); an unversioned collection (written without
    ``set_corpus_version``) is identified by its size."""
    return store.corpus_version() or f"{UNVERSIONED}{store.count()}"


def _chunk_to_json(chunk: Chunk) -> str:
    return json.dumps(
        {
            "id": chunk.id,
            "doc_id": chunk.doc_id,
            "text": chunk.text,
            "section": chunk.section,
            "position": chunk.position,
            "metadata": chunk.metadata,
        },
        ensure_ascii=False,
    )


def _chunk_from_json(line: str) -> Chunk:
    data = json.loads(line)
    return Chunk(
        id=data["id"],
        doc_id=data["doc_id"],
        text=data["text"],
        section=data["section"],
        position=data["position"],
        metadata=data["metadata"],
    )


class LexicalIndex:
    """BM25 over :attr:`Chunk.indexed_text` of every chunk in a :class:`ChunkStore`."""

    def __init__(
        self,
        store: ChunkStore,
        index_dir: Path,
        chunks: list[Chunk],
        bm25: bm25s.BM25 | None,
        version: str,
        freshness_interval_s: float = 2.0,
    ) -> None:
        self.store = store
        self.index_dir = Path(index_dir)
        self.freshness_interval_s = freshness_interval_s
        self._lock = threading.Lock()  # guards the swap of the searchable state
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._last_check = self._built_at = time.monotonic()
        self._install(chunks, bm25, version)

    # --- construction --------------------------------------------------------------------
    @classmethod
    def load_or_build(
        cls, store: ChunkStore, index_dir: Path, freshness_interval_s: float = 2.0
    ) -> LexicalIndex:
        """The index saved in ``index_dir`` if it matches the store's corpus version, else a
        fresh one built from the store (and saved there)."""
        index_dir = Path(index_dir)
        version = read_corpus_version(store)
        chunks, bm25 = _load_or_build_parts(store, index_dir, version)
        return cls(store, index_dir, chunks, bm25, version, freshness_interval_s)

    def _install(self, chunks: list[Chunk], bm25: bm25s.BM25 | None, version: str) -> None:
        # Per filter key: value -> indices of the chunks that have it (masks for filtering).
        postings: dict[str, dict[str, list[int]]] = {key: {} for key in FILTER_KEYS}
        for i, chunk in enumerate(chunks):
            for key in FILTER_KEYS:
                postings[key].setdefault(chunk_field(chunk, key), []).append(i)
        by_id = {chunk.id: chunk for chunk in chunks}
        with self._lock:
            self._chunks = chunks
            self._by_id = by_id
            self._bm25 = bm25
            self.version = version
            self._postings = {
                key: {value: np.asarray(ids, dtype=np.int64) for value, ids in by_value.items()}
                for key, by_value in postings.items()
            }

    def ensure_fresh(self) -> None:
        """Rebuild (or load another process's rebuild) when the store's corpus version changed.

        Cheap: the version is re-read at most every ``freshness_interval_s`` seconds. Searches
        keep using the current index while a refresh runs (the swap happens at the end), and
        only one thread refreshes at a time.
        """
        if time.monotonic() - self._last_check < self.freshness_interval_s:
            return
        if not self._refresh_lock.acquire(blocking=False):
            return  # another thread is refreshing; serve the current index meanwhile
        try:
            if time.monotonic() - self._last_check < self.freshness_interval_s:
                return
            self._last_check = time.monotonic()
            version = read_corpus_version(self.store)
            if version == self.version or self._unversioned_too_soon(version):
                return
            log.info(
                "corpus version changed (%s -> %s); refreshing BM25 index", self.version, version
            )
            chunks, bm25 = _load_or_build_parts(self.store, self.index_dir, version)
            self._install(chunks, bm25, version)
            self._built_at = self._last_check = time.monotonic()
        finally:
            self._refresh_lock.release()

    def _unversioned_too_soon(self, version: str) -> bool:
        # A collection without a recorded version is being filled by a first ingest (which
        # records the version at its end): follow its growth, but not with back-to-back builds.
        both_unversioned = version.startswith(UNVERSIONED) and self.version.startswith(UNVERSIONED)
        return (
            both_unversioned
            and len(self) > 0
            and time.monotonic() - self._built_at < UNVERSIONED_REFRESH_S
        )

    # --- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._chunks)

    def document_frequencies(self) -> tuple[dict[str, int], int]:
        """(token -> number of chunks containing it, number of chunks) of the current index."""
        with self._lock:
            bm25 = self._bm25
        if bm25 is None:
            return {}, 0
        # bm25s keeps a token-major CSC score matrix: a token's document frequency is the
        # length of its column.
        indptr = np.asarray(bm25.scores["indptr"])
        df = {
            token: int(indptr[i + 1] - indptr[i])
            for token, i in bm25.vocab_dict.items()
            if token and i + 1 < len(indptr)
        }
        return df, int(bm25.scores["num_docs"])

    def chunks(self) -> list[Chunk]:
        """The indexed chunks."""
        with self._lock:
            return list(self._chunks)

    def chunks_by_id(self, ids: Iterable[str]) -> dict[str, Chunk]:
        """The indexed chunks among ``ids`` (ids not in the index are left out)."""
        by_id = self._by_id
        return {chunk_id: by_id[chunk_id] for chunk_id in ids if chunk_id in by_id}

    def search(
        self, query: str, k: int, filters: Filters | None = None
    ) -> list[tuple[Chunk, float]]:
        """Up to ``k`` chunks with a positive BM25 score for ``query``, best first.

        Raises :class:`EmptyIndexError` when nothing is indexed.
        """
        normalized = normalize_filters(filters)
        with self._lock:
            chunks, bm25, postings = self._chunks, self._bm25, self._postings
        if bm25 is None or not chunks:
            raise EmptyIndexError("the lexical index is empty: run `mlrag ingest` first")
        token_ids = [bm25.vocab_dict[t] for t in tokenize(query) if t in bm25.vocab_dict]
        if not token_ids or k <= 0:
            return []
        scores = bm25.get_scores_from_ids(token_ids)
        mask = _filter_mask(postings, normalized, len(chunks))
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k:
            top = np.argpartition(scores[candidates], -k)[-k:]
            candidates = candidates[top]
        # Sort by score, then by position in the index so ties are deterministic.
        order = sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), i))
        return [(chunks[i], float(scores[i])) for i in order]


def _filter_mask(
    postings: dict[str, dict[str, np.ndarray]], filters: NormalizedFilters | None, n: int
) -> np.ndarray | None:
    """Boolean mask of the chunks passing ``filters`` (None: no filtering)."""
    if not filters:
        return None
    mask = np.ones(n, dtype=bool)
    for key, values in filters.items():
        key_mask = np.zeros(n, dtype=bool)
        for value in values:
            ids = postings[key].get(value)
            if ids is not None:
                key_mask[ids] = True
        mask &= key_mask
    return mask


# --- building and persistence ----------------------------------------------------------------
def _load_or_build_parts(
    store: ChunkStore, index_dir: Path, version: str
) -> tuple[list[Chunk], bm25s.BM25 | None]:
    loaded = _load(index_dir, version)
    if loaded is not None:
        return loaded
    from filelock import FileLock

    index_dir.mkdir(parents=True, exist_ok=True)
    # One builder at a time per index dir; whoever waited re-checks for the fresh build.
    with FileLock(str(index_dir / ".build.lock")):
        loaded = _load(index_dir, version)
        if loaded is not None:
            return loaded
        started = time.perf_counter()
        chunks = list(store.iter_chunks())
        bm25 = build_bm25(chunk.indexed_text for chunk in chunks) if chunks else None
        _save(index_dir, version, chunks, bm25)
        log.info(
            "built BM25 index of %d chunks in %.1fs", len(chunks), time.perf_counter() - started
        )
        return chunks, bm25


def build_bm25(texts: Iterable[str]) -> bm25s.BM25:
    """A bm25s index over ``texts`` tokenised with :func:`tokenize`."""
    import bm25s

    corpus_tokens = [tokenize(text) for text in texts]
    bm25 = bm25s.BM25()
    bm25.index(corpus_tokens, show_progress=False)
    return bm25


def _read_current(index_dir: Path) -> Path | None:
    try:
        name = (index_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return index_dir / name if name else None


def _load(index_dir: Path, version: str) -> tuple[list[Chunk], bm25s.BM25 | None] | None:
    """The saved index if it exists, is complete and matches ``version``; else None."""
    folder = _read_current(index_dir)
    if folder is None:
        return None
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION or meta.get("corpus_version") != version:
            return None
        with (folder / CHUNKS_FILE).open(encoding="utf-8") as fh:
            chunks = [_chunk_from_json(line) for line in fh if line.strip()]
        if len(chunks) != meta.get("n_chunks"):
            return None
        bm25 = None
        if chunks:
            import bm25s

            bm25 = bm25s.BM25.load(str(folder / BM25_DIR), show_progress=False)
        return chunks, bm25
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable lexical index at %s: %s", folder, exc)
        return None


def _save(index_dir: Path, version: str, chunks: list[Chunk], bm25: Any) -> None:
    """Write a new versioned folder, then point ``CURRENT`` at it atomically."""
    name = f"v-{version}-{uuid.uuid4().hex[:8]}"
    tmp = index_dir / f".tmp-{name}"
    tmp.mkdir(parents=True)
    try:
        with (tmp / CHUNKS_FILE).open("w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(_chunk_to_json(chunk) + "\n")
        if bm25 is not None:
            bm25.save(str(tmp / BM25_DIR), show_progress=False)
        meta = {"format": FORMAT_VERSION, "corpus_version": version, "n_chunks": len(chunks)}
        (tmp / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        final = index_dir / name
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = index_dir / f".{CURRENT_FILE}.{uuid.uuid4().hex[:8]}"
    pointer.write_text(name, encoding="utf-8")
    os.replace(pointer, index_dir / CURRENT_FILE)
    _remove_old_versions(index_dir, keep=name)


def _remove_old_versions(index_dir: Path, keep: str) -> None:
    """Delete superseded folders. A reader that already opened one keeps its data in memory,
    so removing them is safe once ``CURRENT`` points elsewhere."""
    for child in index_dir.iterdir():
        if child.is_dir() and child.name != keep and child.name.startswith(("v-", ".tmp-")):
            with contextlib.suppress(OSError):
                shutil.rmtree(child)
