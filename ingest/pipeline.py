"""The incremental ingest: sources → documents → chunks → embeddings → the chunk store.

Re-running an ingest costs only what changed: a document whose content and chunking inputs
are unchanged is skipped without chunking or embedding; a changed document embeds only its
new chunks and then loses exactly its stale ones.

Crash safety (SIGKILL at any moment, then a rerun, converges to what one uninterrupted run
produces). The store is the only state, and every write is idempotent and ordered so that
the rerun can finish the job:

1. Chunk ids are a pure function of (doc id, indexed text, occurrence), and every chunk
   carries ``ingest_key`` (a digest of the document and of every chunking input). A rerun
   recomputes the same ids and keys.
2. New chunks are upserted (with embedding) before anything is deleted. A chunk id that
   is already stored is never embedded again, so an interrupted run's finished batches are
   kept, and an upsert that died half-way is simply repeated (upsert is idempotent).
3. Only after all new chunks are stored are kept chunks' metadata refreshed (position,
   ``n_chunks``, ``ingest_key``) and stale ids deleted; both are idempotent too.
4. A document counts as "unchanged" only if *every* stored chunk carries the current
   ``ingest_key`` and their number equals the recorded ``n_chunks``. Any interrupted
   state (new chunks beside stale ones, partly refreshed metadata, partly deleted stale
   chunks, a partial upsert) breaks one of the two conditions, so the rerun diffs that
   document again and completes steps 2–3.
5. The corpus version is recomputed from the stored ids at the end of every run and written
   whenever it differs, so a crash before that write is repaired by the next run even if
   that run changes nothing else.
6. Pruning (step 3 for whole documents) only deletes; a crash part-way leaves documents a
   rerun deletes again.

Nothing of a failed source is written: loading and chunking happen before any write for a
document, so a source that fails keeps its old chunks.

Locking: one ingest per data dir, via ``filelock.FileLock(data_dir / "ingest.lock")``.
With a Chroma server (``MLRAG_CHROMA_URL``) an ingest also holds a lease lock stored in the
server (:mod:`ingest.store_lock`), so ingests from other machines are serialised too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import filelock
from tqdm import tqdm

from ingest.chunking import chunk_document, chunker_fingerprint
from ingest.store_lock import shared_ingest_lock
from rag.errors import IngestLockedError, MlragError
from rag.store import ChunkStore, chunk_to_metadata, corpus_version_of
from rag.types import Chunk, Document

if TYPE_CHECKING:
    from ingest.sources import SourceSpec
    from rag.config import Settings

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], None]

STATE_FILE = "ingest_state.json"  # fingerprint of the last complete run, for --if-stale


@dataclass
class IngestSummary:
    """What one ingest run did."""

    documents: int  # documents produced by the sources in this run
    chunks_added: int
    chunks_removed: int
    chunks_unchanged: int
    failed: list[dict[str, str]] = field(default_factory=list)  # {"source", "error"}
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON shape used by ``mlrag ingest --json`` and the API."""
        return asdict(self)


@dataclass(frozen=True)
class IngestFailure:
    """A source that produced no document this run (its stored chunks are kept)."""

    source: str
    error: str
    doc_id: str | None = None  # when known: protects that document from pruning
    prefix: str | None = None  # a crawl root's doc-id prefix: protects its crawled pages


@dataclass
class _DocPlan:
    """The writes one changed document needs."""

    doc_id: str
    to_embed: list[Chunk]
    to_refresh: list[Chunk]
    stale_ids: list[str]


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def ingest_key(doc: Document, fingerprint: str) -> str:
    """Digest of a document's content, descriptive fields and the chunker settings: equal
    keys mean re-chunking would produce exactly the stored chunks and metadata."""
    meta = json.dumps(
        {k: v for k, v in sorted(doc.metadata.items()) if isinstance(v, str | int | float | bool)},
        sort_keys=True,
    )
    raw = "\x00".join((fingerprint, doc.id, doc.hash, doc.title, doc.url, doc.source, meta))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _scan_store(store: ChunkStore) -> dict[str, dict[str, dict[str, Any]]]:
    """Stored chunk metadata grouped by document: ``{doc_id: {chunk_id: metadata}}``."""
    by_doc: dict[str, dict[str, dict[str, Any]]] = {}
    offset, page_size = 0, 1000
    while True:
        page = store.collection.get(include=["metadatas"], limit=page_size, offset=offset)
        for chunk_id, meta in zip(page["ids"], page["metadatas"], strict=True):
            meta = dict(meta or {})
            by_doc.setdefault(str(meta.get("doc_id", "")), {})[chunk_id] = meta
        if len(page["ids"]) < page_size:
            return by_doc
        offset += page_size


def _is_unchanged(stored: dict[str, dict[str, Any]], key: str) -> bool:
    if not stored:
        return False
    metas = list(stored.values())
    return all(m.get("ingest_key") == key for m in metas) and all(
        int(m.get("n_chunks", -1)) == len(metas) for m in metas
    )


def _report(on_progress: ProgressCallback | None, **event: Any) -> None:
    if on_progress is not None:
        try:
            on_progress(event)
        except Exception:  # noqa: BLE001 - a broken listener must not break the ingest
            log.exception("ingest progress callback failed")


def ingest_lock(settings: Settings) -> filelock.BaseFileLock:
    """The data dir's ingest lock (local to this machine, also in Chroma server mode)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(settings.data_dir / "ingest.lock"))


def acquire_ingest_lock(settings: Settings) -> filelock.BaseFileLock:
    """Take the data dir's ingest lock (waiting up to ``ingest_lock_timeout_s``) and return
    it, held; raises :class:`IngestLockedError` when another ingest keeps it."""
    lock = ingest_lock(settings)
    try:
        lock.acquire(timeout=settings.ingest_lock_timeout_s)
    except filelock.Timeout as exc:
        raise IngestLockedError(
            f"another ingest holds {lock.lock_file} (waited {settings.ingest_lock_timeout_s:g} s); "
            "wait for it to finish or raise MLRAG_INGEST_LOCK_TIMEOUT_S"
        ) from exc
    return lock


def ingest_documents(
    settings: Settings,
    items: Iterable[Document | IngestFailure],
    *,
    store: ChunkStore | None = None,
    prune: bool = False,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    documents_total: int | None = None,
    locked: bool = False,
) -> IngestSummary:
    """Ingest already-loaded documents (failures are recorded and protect their documents);
    holds the data dir's ingest lock for the whole run (``locked``: the caller already holds
    it, as a rebuild does). ``prune`` deletes every stored document that ``items`` did not
    produce and that no failure protects. Store failures raise
    :class:`~rag.errors.StoreUnavailableError` (cannot read) or
    :class:`~rag.errors.StoreWriteError` (cannot write: disk full, ...); a rerun after
    fixing the cause resumes (see the module docstring)."""
    lock = None if locked else acquire_ingest_lock(settings)
    try:
        store = store or ChunkStore.from_settings(settings)
        # With a Chroma server, also the lock that lives with the store (other machines).
        with shared_ingest_lock(settings, store):
            return _ingest_locked(
                settings, items, store, prune, progress, on_progress, documents_total
            )
    finally:
        if lock is not None:
            lock.release()


def _ingest_locked(
    settings: Settings,
    items: Iterable[Document | IngestFailure],
    store: ChunkStore,
    prune: bool,
    progress: bool,
    on_progress: ProgressCallback | None,
    documents_total: int | None,
) -> IngestSummary:
    started = time.perf_counter()
    embedder = store.embedder
    fingerprint = chunker_fingerprint(
        chunk_tokens=settings.chunk_tokens,
        overlap=settings.chunk_overlap,
        max_tokens=embedder.max_tokens,
        model=embedder.model_name,
    )
    existing = _scan_store(store)
    failed: list[IngestFailure] = []
    produced: set[str] = set()
    plans: list[_DocPlan] = []
    unchanged = 0

    # 1. Load and plan every document (no writes yet).
    for item in items:
        if isinstance(item, IngestFailure):
            failed.append(item)
            log.warning("source failed: %s: %s", item.source, item.error)
        elif item.id in produced:
            log.info("skipping %s: already produced by another source in this run", item.id)
            continue
        else:
            produced.add(item.id)
            try:
                plan, kept = _plan_document(
                    item, existing.get(item.id, {}), settings, embedder, fingerprint
                )
            except Exception as exc:  # noqa: BLE001 - one bad document must not stop the rest
                produced.discard(item.id)
                failed.append(
                    IngestFailure(item.source, f"chunking failed: {_one_line(exc)}", item.id)
                )
                continue
            unchanged += kept
            if plan is not None:
                plans.append(plan)
        _report(
            on_progress,
            stage="loading",
            documents_done=len(produced) + len(failed),
            documents_total=max(documents_total or 0, len(produced) + len(failed)),
            chunks_embedded=0,
        )
    documents_done = len(produced) + len(failed)

    # 2. Embed and upsert new chunks, longest first (as sentence-transformers batches them,
    # so padding stays minimal), one batch at a time so an interrupted run keeps its work.
    to_embed = sorted((c for p in plans for c in p.to_embed), key=lambda c: -len(c.indexed_text))
    batch = settings.embed_batch_size
    bar = tqdm(
        total=len(to_embed), unit="chunk", desc="embedding", disable=not progress, file=sys.stderr
    )
    try:
        for start in range(0, len(to_embed), batch):
            chunks = to_embed[start : start + batch]
            vectors = embedder.embed_documents([c.indexed_text for c in chunks], batch_size=batch)
            store.upsert(chunks, vectors)
            bar.update(len(chunks))
            _report(
                on_progress,
                stage="embedding",
                documents_done=documents_done,
                documents_total=documents_done,
                chunks_embedded=start + len(chunks),
                chunks_total=len(to_embed),
            )
    finally:
        bar.close()

    # 3. Only now refresh kept chunks and drop stale ones.
    _report(
        on_progress,
        stage="finalising",
        documents_done=documents_done,
        documents_total=documents_done,
        chunks_embedded=len(to_embed),
    )
    removed = 0
    for plan in plans:
        store.update_metadata(plan.to_refresh)
        store.delete(plan.stale_ids)
        removed += len(plan.stale_ids)
    if prune:
        doomed = _prune_ids(existing, produced, failed)
        store.delete(doomed)
        removed += len(doomed)

    # 4. Record the corpus version whenever it is not current (also repairs a crash that
    # happened after the writes but before this point).
    version = corpus_state_version(store)
    version_changed = version != store.corpus_version()  # re-read from Chroma
    if version_changed:
        store.set_corpus_version(version)
    if version_changed or to_embed or removed or any(p.to_refresh for p in plans):
        _warm_lexical_index(settings, store)

    summary = IngestSummary(
        documents=len(produced),
        chunks_added=len(to_embed),
        chunks_removed=removed,
        chunks_unchanged=unchanged,
        failed=[{"source": f.source, "error": f.error} for f in failed],
        seconds=round(time.perf_counter() - started, 3),
    )
    _report(
        on_progress,
        stage="done",
        documents_done=documents_done,
        documents_total=documents_done,
        chunks_embedded=len(to_embed),
        summary=summary.to_dict(),
    )
    return summary


def _plan_document(
    doc: Document,
    stored: dict[str, dict[str, Any]],
    settings: Settings,
    embedder: Any,
    fingerprint: str,
) -> tuple[_DocPlan | None, int]:
    """The writes ``doc`` needs and how many of its chunks are kept as they are."""
    key = ingest_key(doc, fingerprint)
    if _is_unchanged(stored, key):
        return None, len(stored)
    chunks = chunk_document(
        doc,
        embedder.tokenizer,
        chunk_tokens=settings.chunk_tokens,
        overlap=settings.chunk_overlap,
        max_tokens=embedder.max_tokens,
    )
    chunks = [
        Chunk(c.id, c.doc_id, c.text, c.section, c.position, {**c.metadata, "ingest_key": key})
        for c in chunks
    ]
    new_ids = {c.id for c in chunks}
    to_embed = [c for c in chunks if c.id not in stored]
    kept = [c for c in chunks if c.id in stored]
    to_refresh = [c for c in kept if chunk_to_metadata(c) != stored[c.id]]
    stale = [cid for cid in stored if cid not in new_ids]
    if not (to_embed or to_refresh or stale):
        return None, len(kept)
    return _DocPlan(doc.id, to_embed, to_refresh, stale), len(kept)


def _prune_ids(
    existing: dict[str, dict[str, dict[str, Any]]], produced: set[str], failed: list[IngestFailure]
) -> list[str]:
    """Chunk ids of stored documents the sources no longer produce, except those a failed
    source might still stand for (a failed fetch must not delete what it used to give)."""
    protected = {f.doc_id for f in failed if f.doc_id}
    prefixes = [f.prefix for f in failed if f.prefix]
    doomed: list[str] = []
    for doc_id, chunks in existing.items():
        if doc_id in produced or doc_id in protected:
            continue
        if any(doc_id.startswith(p) for p in prefixes):
            continue
        doomed.extend(chunks)
    return doomed


def corpus_state_version(store: ChunkStore) -> str:
    """The corpus version of what the store holds: :func:`rag.store.corpus_version_of` over
    chunk ids paired with their ``ingest_key``, so it changes when a chunk is added or
    removed *and* when only metadata changed (a topic or URL edited in the sources file),
    which derived indexes (BM25, filters) must also pick up. A pure function of the stored
    state, so a resumed run records the same version as an uninterrupted one."""
    keyed: list[str] = []
    offset, page_size = 0, 1000
    while True:
        page = store.collection.get(include=["metadatas"], limit=page_size, offset=offset)
        for chunk_id, meta in zip(page["ids"], page["metadatas"], strict=True):
            keyed.append(f"{chunk_id}\x00{(meta or {}).get('ingest_key', '')}")
        if len(page["ids"]) < page_size:
            return corpus_version_of(keyed)
        offset += page_size


def _warm_lexical_index(settings: Settings, store: ChunkStore) -> None:
    """Rebuild the BM25 index now, so the first search after an ingest is fast. It is
    derived data: failing here leaves the ingest valid (the index is rebuilt on first use)."""
    try:
        from rag.lexical import LexicalIndex, lexical_index_dir

        LexicalIndex.load_or_build(store, lexical_index_dir(settings))
    except Exception as exc:  # noqa: BLE001 - see docstring
        log.warning("could not rebuild the lexical index now (it is rebuilt on first use): %s", exc)


# --- sources → documents -------------------------------------------------------------------


def _failure_for(
    source: str, error: str, base_dir: Path, specs: list[SourceSpec], depth: int | None
) -> IngestFailure:
    """An :class:`IngestFailure` with the doc id (and crawl prefix) it must protect."""
    from ingest.sources import doc_id_for, is_url, normalize_url

    try:
        doc_id = doc_id_for(source, base_dir)
    except MlragError:
        doc_id = None
    prefix = None
    if is_url(source):
        url = normalize_url(source)
        for spec in specs:
            spec_depth = spec.depth if depth is None else depth
            if spec.kind == "url" and spec_depth > 0 and normalize_url(spec.location) == url:
                parts = urlsplit(url)
                directory = parts.path[: parts.path.rfind("/") + 1]
                prefix = "url:" + urlunsplit((parts.scheme, parts.netloc, directory, "", ""))
    return IngestFailure(source=source, error=_one_line(error), doc_id=doc_id, prefix=prefix)


def iter_documents(
    specs: list[SourceSpec],
    *,
    base_dir: Path,
    settings: Settings,
    mirror: Path | None = None,
    depth: int | None = None,
    allow_private: bool = True,
) -> Iterator[Document | IngestFailure]:
    """Resolve sources (files, mirror, network) and load each into a Document; every
    source that cannot be fetched or loaded yields one :class:`IngestFailure` instead."""
    from ingest.fetch import RawSource, resolve_sources
    from ingest.loaders import detect_format, load_document

    for raw in resolve_sources(
        specs,
        base_dir=base_dir,
        settings=settings,
        mirror=mirror,
        depth=depth,
        allow_private=allow_private,
    ):
        if not isinstance(raw, RawSource):
            yield _failure_for(raw.source, raw.error, base_dir, specs, depth)
            continue
        try:
            fmt = raw.fmt or detect_format(raw.name, raw.content_type)
            yield load_document(
                raw.data,
                fmt=fmt,
                doc_id=raw.doc_id,
                source=raw.source,
                url=raw.url,
                title=raw.title,
                topic=raw.topic,
                metadata=dict(raw.metadata),
            )
        except Exception as exc:  # noqa: BLE001 - SourceError or a loader bug: same outcome
            yield IngestFailure(raw.source, _one_line(exc), doc_id=raw.doc_id)


def run_ingest(
    settings: Settings,
    *,
    sources_file: Path | None = None,
    specs: list[SourceSpec] | None = None,
    mirror: Path | None = None,
    depth: int | None = None,
    prune: bool = False,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    store: ChunkStore | None = None,
    base_dir: Path | None = None,
    allow_private: bool = True,
    locked: bool = False,
) -> IngestSummary:
    """Ingest the sources file (default ``settings.sources``) or the given ``specs``.

    ``mirror`` maps URLs to local copies (no network); ``depth`` overrides every URL's
    link-following depth; ``prune`` deletes documents the sources no longer produce (never
    those of a source that failed). ``base_dir`` resolves relative paths of ``specs``
    (default: the sources file's folder, else the working directory); ``allow_private``
    lets URLs reach private/loopback hosts (the API passes False); ``locked`` says the
    caller already holds the ingest lock.
    Raises ConfigError for a malformed sources file and IngestLockedError when another
    ingest holds the lock; per-source problems end up in ``summary.failed``.
    """
    from ingest.sources import load_sources

    if specs is None:
        sources_file = sources_file or settings.sources
        specs = load_sources(sources_file)
    if base_dir is None:
        base_dir = sources_file.parent if sources_file is not None else Path.cwd()
    mirror = mirror if mirror is not None else settings.mirror
    # Fingerprint the inputs before reading them: a file edited during the run makes the
    # recorded state stale rather than wrongly current.
    fingerprint = (
        ingest_fingerprint(settings, sources_file, mirror, depth)
        if sources_file is not None
        else None
    )
    items = iter_documents(
        specs,
        base_dir=base_dir,
        settings=settings,
        mirror=mirror,
        depth=depth,
        allow_private=allow_private,
    )
    summary = ingest_documents(
        settings,
        items,
        store=store,
        prune=prune,
        progress=progress,
        on_progress=on_progress,
        documents_total=len(specs),
        locked=locked,
    )
    if fingerprint is not None:
        _write_state(settings, fingerprint, summary, store)
    return summary


# --- status and staleness ------------------------------------------------------------------


def ingest_fingerprint(
    settings: Settings, sources_file: Path, mirror: Path | None, depth: int | None
) -> str:
    """Digest of everything a sources-file ingest reads locally: the sources file, the
    mirror's files and the local source files (sizes and mtimes), and the chunking and
    model settings. URL sources fetched over the network are not re-checked. Raises
    ConfigError for a malformed sources file."""
    from ingest.chunking import CHUNKER_VERSION

    digest = hashlib.sha256()
    parts: list[str] = [
        CHUNKER_VERSION,
        str(settings.chunk_tokens),
        str(settings.chunk_overlap),
        settings.embedding_model,
        settings.collection,
        str(settings.chroma_url),
        str(depth),
    ]
    digest.update("\x00".join(parts).encode())
    files: list[Path] = [sources_file]
    if mirror is not None and mirror.is_dir():
        files.extend(sorted(p for p in mirror.rglob("*") if p.is_file()))
    if sources_file.is_file():
        from ingest.sources import load_sources

        base = sources_file.parent
        files.extend(
            base / spec.location for spec in load_sources(sources_file) if spec.kind == "path"
        )
    for path in files:
        try:
            stat = path.stat()
            digest.update(f"{path}\x00{stat.st_size}\x00{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\x00missing\n".encode())
    if sources_file.is_file():
        digest.update(sources_file.read_bytes())
    return digest.hexdigest()[:16]


def _write_state(
    settings: Settings, fingerprint: str, summary: IngestSummary, store: ChunkStore | None
) -> None:
    try:
        store = store or ChunkStore.from_settings(settings)
        state = {
            "fingerprint": fingerprint,
            "corpus_version": store.corpus_version(),
            "failed": len(summary.failed),
        }
        path = settings.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not record ingest state: %s", exc)


def is_index_current(
    settings: Settings, sources_file: Path, mirror: Path | None, depth: int | None
) -> bool:
    """True when the last complete ingest read exactly these inputs, had no failures, and
    the store still holds what it wrote (used by ``mlrag ingest --if-stale``)."""
    try:
        state = json.loads((settings.data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if state.get("failed") or state.get("fingerprint") != ingest_fingerprint(
        settings, sources_file, mirror, depth
    ):
        return False
    store = ChunkStore.from_settings(settings)
    return store.count() > 0 and store.corpus_version() == state.get("corpus_version")


def index_status(settings: Settings, store: ChunkStore | None = None) -> dict[str, Any]:
    """Documents, chunks, corpus version and per-topic counts of the index."""
    store = store or ChunkStore.from_settings(settings)
    docs = store.documents()
    topics: dict[str, dict[str, int]] = {}
    for info in docs.values():
        entry = topics.setdefault(info.topic or "(none)", {"documents": 0, "chunks": 0})
        entry["documents"] += 1
        entry["chunks"] += info.stored_chunks
    return {
        "documents": len(docs),
        "chunks": sum(d.stored_chunks for d in docs.values()),
        "incomplete_documents": sorted(d.doc_id for d in docs.values() if not d.complete),
        "corpus_version": store.corpus_version(),
        "collection": settings.collection,
        "store": settings.chroma_url or str(settings.chroma_dir),
        "topics": dict(sorted(topics.items())),
    }
