"""The incremental ingest: idempotence, replacement, pruning, failures, crash-resume, lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import filelock
import pytest

from ingest.chunking import chunk_document
from ingest.pipeline import (
    IngestFailure,
    corpus_state_version,
    index_status,
    ingest_documents,
    run_ingest,
)
from rag.errors import IngestLockedError
from rag.store import ChunkStore
from rag.types import Document

REPO_ROOT = Path(__file__).resolve().parents[2]


def _text(topic: str, sections: int = 3, sentences: int = 8) -> str:
    parts = [f"# {topic.title()} handbook"]
    for s in range(sections):
        parts.append(f"## {topic.title()} part {s}")
        parts.append(
            " ".join(
                f"In part {s}, the {topic} technique {i} changes how gradients, losses and batches interact."
                for i in range(sentences)
            )
        )
    return "\n\n".join(parts)


def _doc(name: str, text: str | None = None, **meta: Any) -> Document:
    return Document(
        id=f"file:{name}.md",
        source=f"{name}.md",
        title=f"{name.title()} handbook",
        url=f"https://example.org/{name}",
        text=text if text is not None else _text(name),
        metadata={"topic": name, "format": "md", **meta},
    )


@pytest.fixture
def store(settings, embedder) -> ChunkStore:
    return ChunkStore.from_settings(settings, embedder)


def _ingest(settings, store, docs, **kw: Any):
    return ingest_documents(settings, docs, store=store, progress=False, **kw)


def _expected_ids(embedder, settings, doc: Document) -> set[str]:
    chunks = chunk_document(
        doc,
        embedder.tokenizer,
        chunk_tokens=settings.chunk_tokens,
        overlap=settings.chunk_overlap,
        max_tokens=embedder.max_tokens,
    )
    return {c.id for c in chunks}


def _snapshot(store: ChunkStore) -> dict[str, tuple[str, dict[str, Any]]]:
    data = store.collection.get(include=["documents", "metadatas"])
    return {
        cid: (text, meta)
        for cid, text, meta in zip(data["ids"], data["documents"], data["metadatas"], strict=True)
    }


class EmbedSpy:
    """Counts texts passed to the embedder (wraps the real method)."""

    def __init__(self, embedder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        real = embedder.embed_documents

        def spy(texts, *args, **kwargs):
            self.texts.extend(texts)
            return real(texts, *args, **kwargs)

        monkeypatch.setattr(embedder, "embed_documents", spy)


def test_first_ingest_then_idempotent_reingest(settings, store, embedder, monkeypatch) -> None:
    docs = [_doc("alpha"), _doc("beta")]
    first = _ingest(settings, store, docs)
    expected = _expected_ids(embedder, settings, docs[0]) | _expected_ids(
        embedder, settings, docs[1]
    )
    assert first.documents == 2
    assert first.chunks_added == len(expected) == store.count()
    assert first.chunks_removed == 0 and first.failed == []
    assert set(store.all_ids()) == expected
    assert store.corpus_version() == corpus_state_version(store) != ""
    assert all(info.complete for info in store.documents().values())

    spy = EmbedSpy(embedder, monkeypatch)
    again = _ingest(settings, store, docs)
    assert (again.chunks_added, again.chunks_removed, again.chunks_unchanged) == (
        0,
        0,
        len(expected),
    )
    assert spy.texts == []
    assert set(store.all_ids()) == expected


def test_changed_document_replaces_exactly_its_chunks(
    settings, store, embedder, monkeypatch
) -> None:
    alpha, beta = _doc("alpha"), _doc("beta")
    _ingest(settings, store, [alpha, beta])
    before = _snapshot(store)
    old_alpha = set(store.chunk_ids_for(alpha.id))

    edited = _doc(
        "alpha",
        alpha.text.replace("the alpha technique 3 changes", "the alpha technique 3 rewires", 1),
    )
    new_alpha = _expected_ids(embedder, settings, edited)
    spy = EmbedSpy(embedder, monkeypatch)
    summary = _ingest(settings, store, [edited, beta])

    assert set(store.chunk_ids_for(alpha.id)) == new_alpha
    assert summary.chunks_added == len(new_alpha - old_alpha) == len(spy.texts) > 0
    assert summary.chunks_removed == len(old_alpha - new_alpha) > 0
    assert summary.chunks_unchanged == len(new_alpha & old_alpha) + len(
        store.chunk_ids_for(beta.id)
    )
    after = _snapshot(store)
    for cid in store.chunk_ids_for(beta.id):  # the other document is untouched
        assert after[cid] == before[cid]
    for cid in new_alpha & old_alpha:  # kept chunks carry the new document hash
        assert after[cid][1]["doc_hash"] == edited.hash
    assert store.corpus_version() == corpus_state_version(store)


def test_metadata_only_change_refreshes_chunks_and_version(
    settings, store, embedder, monkeypatch
) -> None:
    alpha = _doc("alpha")
    _ingest(settings, store, [alpha])
    ids, version = set(store.all_ids()), store.corpus_version()
    retopiced = _doc("alpha", alpha.text, topic="optimisation")
    spy = EmbedSpy(embedder, monkeypatch)
    summary = _ingest(settings, store, [retopiced])
    assert spy.texts == [] and summary.chunks_added == 0
    assert set(store.all_ids()) == ids
    assert {c.topic for c in store.iter_chunks()} == {"optimisation"}
    assert store.corpus_version() != version  # derived indexes (BM25 filters) must rebuild


def test_kept_chunks_get_fresh_positions(settings, store, embedder) -> None:
    alpha = _doc("alpha")
    _ingest(settings, store, [alpha])
    prefix = "# Alpha handbook\n\n## Preface\n\n" + " ".join(
        f"Preface sentence {i} about optimisation." for i in range(30)
    )
    moved = _doc("alpha", prefix + "\n\n" + alpha.text.split("\n\n", 1)[1])
    summary = _ingest(settings, store, [moved])
    assert summary.chunks_unchanged > 0 and summary.chunks_added > 0
    chunks = sorted(store.iter_chunks({"doc_id": alpha.id}), key=lambda c: c.position)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(c.metadata["n_chunks"] == len(chunks) for c in chunks)
    assert chunks[0].section == "Preface"


def test_prune_deletes_removed_documents_only_when_asked(settings, store) -> None:
    alpha, beta = _doc("alpha"), _doc("beta")
    _ingest(settings, store, [alpha, beta])
    beta_ids = set(store.chunk_ids_for(beta.id))

    kept = _ingest(settings, store, [alpha])
    assert kept.chunks_removed == 0
    assert set(store.chunk_ids_for(beta.id)) == beta_ids

    pruned = _ingest(settings, store, [alpha], prune=True)
    assert pruned.chunks_removed == len(beta_ids)
    assert store.chunk_ids_for(beta.id) == []
    assert set(store.documents()) == {alpha.id}
    assert store.corpus_version() == corpus_state_version(store)


def test_failed_source_keeps_old_chunks_even_with_prune(settings, store) -> None:
    alpha, beta = _doc("alpha"), _doc("beta")
    _ingest(settings, store, [alpha, beta])
    beta_ids = set(store.chunk_ids_for(beta.id))
    failure = IngestFailure(source="beta.md", error="HTTP 503", doc_id=beta.id)
    summary = _ingest(settings, store, [alpha, failure], prune=True)
    assert summary.failed == [{"source": "beta.md", "error": "HTTP 503"}]
    assert summary.chunks_removed == 0
    assert set(store.chunk_ids_for(beta.id)) == beta_ids


def test_failed_crawl_root_protects_its_pages(settings, store) -> None:
    page = Document(
        id="url:https://docs.example.org/guide/intro.html",
        source="https://docs.example.org/guide/intro.html",
        title="Intro",
        url="https://docs.example.org/guide/intro.html",
        text=_text("crawl"),
        metadata={"topic": "t"},
    )
    _ingest(settings, store, [page])
    failure = IngestFailure(
        "https://docs.example.org/guide/",
        "timed out",
        doc_id="url:https://docs.example.org/guide/",
        prefix="url:https://docs.example.org/guide/",
    )
    _ingest(settings, store, [failure], prune=True)
    assert store.chunk_ids_for(page.id)


def test_chunking_failure_is_one_line_and_writes_nothing(settings, store, monkeypatch) -> None:
    import ingest.pipeline as pipeline

    alpha, beta = _doc("alpha"), _doc("beta")
    _ingest(settings, store, [alpha, beta])
    beta_ids = set(store.chunk_ids_for(beta.id))
    real = pipeline.chunk_document

    def flaky(doc, *args, **kwargs):
        if doc.id == beta.id:
            raise ValueError("tokenizer exploded\nwith a traceback")
        return real(doc, *args, **kwargs)

    monkeypatch.setattr(pipeline, "chunk_document", flaky)
    summary = _ingest(
        settings, store, [alpha, _doc("beta", _text("beta", sentences=3))], prune=True
    )
    assert summary.failed == [
        {"source": "beta.md", "error": "chunking failed: tokenizer exploded with a traceback"}
    ]
    assert set(store.chunk_ids_for(beta.id)) == beta_ids


def test_interrupted_between_upsert_and_delete_converges(
    settings, store, embedder, tmp_path, monkeypatch
) -> None:
    from rag.config import Settings

    alpha, beta = _doc("alpha"), _doc("beta")
    edited = _doc("alpha", _text("alpha", sections=4, sentences=5))
    _ingest(settings, store, [alpha, beta])

    def crash(ids):
        raise KeyboardInterrupt  # stands in for a kill after the upserts

    monkeypatch.setattr(store, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        _ingest(settings, store, [edited, beta])
    monkeypatch.undo()
    assert set(store.chunk_ids_for(alpha.id)) > _expected_ids(
        embedder, settings, edited
    )  # stale ones still there

    resumed = _ingest(settings, store, [edited, beta])
    assert resumed.chunks_added == 0 and resumed.chunks_removed > 0

    clean_settings = Settings(data_dir=tmp_path / "clean", torch_threads=1)
    clean = ChunkStore.from_settings(clean_settings, embedder)
    _ingest(clean_settings, clean, [edited, beta])
    assert _snapshot(store) == _snapshot(clean)
    assert store.corpus_version() == clean.corpus_version()


def test_progress_events(settings, store) -> None:
    events: list[dict[str, Any]] = []
    _ingest(settings, store, [_doc("alpha"), _doc("beta")], on_progress=events.append)
    stages = [e["stage"] for e in events]
    assert stages[0] == "loading" and stages[-1] == "done"
    assert "embedding" in stages and "finalising" in stages
    for event in events:
        assert {"stage", "documents_done", "documents_total", "chunks_embedded"} <= event.keys()
    assert events[-1]["chunks_embedded"] == store.count()
    assert events[-1]["documents_done"] == 2


def test_broken_progress_callback_does_not_break_ingest(settings, store) -> None:
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    summary = _ingest(settings, store, [_doc("alpha")], on_progress=broken)
    assert summary.chunks_added == store.count() > 0


def test_second_ingest_while_locked_raises(settings, store) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    holder = filelock.FileLock(str(settings.data_dir / "ingest.lock"))
    holder.acquire()
    try:
        with pytest.raises(IngestLockedError, match="another ingest"):
            _ingest(settings, store, [_doc("alpha")])
    finally:
        holder.release()
    assert store.count() == 0
    assert _ingest(settings, store, [_doc("alpha")]).chunks_added > 0  # free again


def test_lock_waits_up_to_timeout(settings, store) -> None:
    waiting = settings.model_copy(update={"ingest_lock_timeout_s": 10.0})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # thread_local=False: the timer thread must be able to release what this thread took.
    holder = filelock.FileLock(str(settings.data_dir / "ingest.lock"), thread_local=False)
    holder.acquire()
    threading.Timer(0.5, holder.release).start()
    started = time.monotonic()
    summary = _ingest(waiting, store, [_doc("alpha")])
    assert time.monotonic() - started >= 0.4
    assert summary.chunks_added > 0


def test_index_status(settings, store) -> None:
    _ingest(settings, store, [_doc("alpha"), _doc("beta")])
    status = index_status(settings, store)
    assert status["documents"] == 2
    assert status["chunks"] == store.count()
    assert status["corpus_version"] == store.corpus_version()
    assert status["topics"]["alpha"]["documents"] == 1
    assert status["incomplete_documents"] == []


# --- through the sources file, loaders and the CLI -----------------------------------------


def write_corpus(folder: Path, n_docs: int, sections: int = 4, sentences: int = 10) -> Path:
    """A sources file with ``n_docs`` Markdown files next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n_docs):
        name = f"doc{i:02d}"
        (folder / f"{name}.md").write_text(
            _text(f"topic{i}", sections=sections, sentences=sentences), encoding="utf-8"
        )
        entries.append(f'[[source]]\npath = "{name}.md"\ntopic = "t{i % 3}"\n')
    sources = folder / "sources.toml"
    sources.write_text("\n".join(entries), encoding="utf-8")
    return sources


def test_run_ingest_from_sources_file(settings, store, tmp_path) -> None:
    pytest.importorskip("ingest.loaders")
    sources = write_corpus(tmp_path / "corpus", 3, sections=2, sentences=4)
    with sources.open("a", encoding="utf-8") as fh:
        fh.write('\n[[source]]\npath = "missing.md"\n')
    summary = run_ingest(settings, sources_file=sources, store=store, progress=False)
    assert summary.documents == 3
    assert [f["source"] for f in summary.failed] == ["missing.md"]
    assert "\n" not in summary.failed[0]["error"]
    assert set(store.documents()) == {f"file:doc{i:02d}.md" for i in range(3)}
    again = run_ingest(settings, sources_file=sources, store=store, progress=False)
    assert again.chunks_added == 0 and again.chunks_unchanged == store.count()


def _run_cli_until_killed(args: list[str], env: dict[str, str], kill_after_chunks: int) -> int:
    """Start ``mlrag ingest`` and SIGKILL it once the progress bar shows some embedded chunks;
    returns the chunk count seen at the kill (0 if it finished first)."""
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen = 0
    buffer = ""
    while True:
        char = proc.stderr.read(1)
        if not char:
            break
        buffer = "" if char in "\r\n" else buffer + char
        if (
            buffer.startswith("embedding:")
            and "|" in buffer
            and "/" in buffer
            and buffer.endswith("]")
        ):
            done = buffer.split("|")[2].strip().split("/")[0]
            if done.isdigit() and int(done) >= kill_after_chunks:
                seen = int(done)
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait(timeout=60)
    return seen


def test_sigkill_mid_embedding_then_rerun_matches_clean_ingest(tmp_path, embedder) -> None:
    pytest.importorskip("ingest.loaders")
    from rag.config import Settings

    sources = write_corpus(tmp_path / "corpus", 6, sections=4, sentences=10)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    env = {**os.environ, "MLRAG_TORCH_THREADS": "1", "MLRAG_EMBED_BATCH_SIZE": "8"}
    mlrag = [sys.executable, "-m", "cli.main", "ingest", "--sources", str(sources)]

    seen = _run_cli_until_killed([*mlrag, "--data-dir", str(killed_dir)], env, kill_after_chunks=8)
    assert seen >= 8, "the ingest finished before it could be killed: make the corpus bigger"

    clean_settings = Settings(data_dir=clean_dir, torch_threads=1)
    clean_store = ChunkStore.from_settings(clean_settings, embedder)
    clean = run_ingest(clean_settings, sources_file=sources, store=clean_store, progress=False)
    assert seen < clean.chunks_added

    rerun = subprocess.run(
        [*mlrag, "--data-dir", str(killed_dir), "--json", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    killed_store = ChunkStore.from_settings(
        Settings(data_dir=killed_dir, torch_threads=1), embedder
    )
    assert _snapshot(killed_store) == _snapshot(clean_store)
    assert killed_store.corpus_version() == clean_store.corpus_version()
    # The resumed run kept the batches finished before the kill.
    import json

    resumed = json.loads(rerun.stdout)
    assert resumed["chunks_added"] <= clean.chunks_added - seen + 8


@pytest.mark.slow
def test_whole_corpus_through_the_mirror(tmp_path, embedder, shared_corpus) -> None:
    """The real sources file and mirror: every source loads, every chunk fits the window."""
    from rag.config import Settings
    from rag.embeddings import configure_torch_threads

    settings = Settings(data_dir=tmp_path / "data", torch_threads=0)
    store = ChunkStore.from_settings(settings, embedder)
    # All cores for the ~3,800 chunks (minutes with one thread); back to 1 for other tests.
    configure_torch_threads(settings.effective_threads())
    try:
        summary = run_ingest(
            settings,
            sources_file=REPO_ROOT / "corpus" / "sources.toml",
            mirror=shared_corpus / "linked",
            store=store,
            progress=False,
        )
    finally:
        configure_torch_threads(1)
    assert summary.failed == []
    assert summary.documents == 96
    assert summary.chunks_added == store.count() > 1000
    docs = store.documents()
    assert len(docs) == 96 and all(info.complete for info in docs.values())
    assert "file:machine-learning.txt" in docs
    longest = max(len(embedder.tokenizer.tokenize(c.indexed_text)) for c in store.iter_chunks())
    assert longest <= min(settings.chunk_tokens, embedder.max_tokens - 2)
    again = run_ingest(
        settings,
        sources_file=REPO_ROOT / "corpus" / "sources.toml",
        mirror=shared_corpus / "linked",
        store=store,
        progress=False,
    )
    assert (again.chunks_added, again.chunks_removed) == (0, 0)


def test_lock_held_by_another_thread_of_this_process(settings, store) -> None:
    """The API runs ingests in background threads: they must exclude each other too."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with filelock.FileLock(str(settings.data_dir / "ingest.lock")):
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(IngestLockedError):
            _ingest(settings, store, [_doc("alpha")])
    finally:
        release.set()
        holder.join()
