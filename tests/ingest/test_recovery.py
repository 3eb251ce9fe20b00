"""Faults end in a clear state: a corrupt index (`mlrag ingest --status`, `mlrag search`
exit 2 with one line; `--rebuild` recovers without reading it), a full disk (exit 4, and a
rerun converges), and backup / restore of the index and the feedback log."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from ingest.pipeline import ingest_lock
from rag.config import Settings
from rag.store import ChunkStore, release_embedded_client
from tests.ingest.test_pipeline import write_corpus
from tests.rag.test_store_faults import CORRUPTIONS, build_synthetic_store

pytest.importorskip("ingest.loaders")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLRAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLRAG_TORCH_THREADS", "1")
    monkeypatch.setenv("MLRAG_EMBED_BATCH_SIZE", "4")
    return data_dir


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", 3, sections=2, sentences=5)


def _ingest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main(["ingest", *args, "--json", "--no-progress"])
    out = capsys.readouterr().out
    return status, (json.loads(out) if out.strip() else {})


def _snapshot(data_dir: Path, embedder) -> dict[str, tuple[str, dict[str, Any]]]:
    settings = Settings(data_dir=data_dir, torch_threads=1)
    store = ChunkStore.from_settings(settings, embedder)
    data = store.collection.get(include=["documents", "metadatas"])
    snapshot = {
        cid: (text, meta)
        for cid, text, meta in zip(data["ids"], data["documents"], data["metadatas"], strict=True)
    }
    store.close()
    release_embedded_client(settings.chroma_dir)
    return snapshot


def _one_error_line(err: str) -> str:
    """The single error line of a command (model-loading progress bars aside)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("mlrag "), err
    return lines[0]


# --- a corrupt index -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_status_and_search_of_a_corrupt_index_exit_2_with_one_line(
    env: Path, embedder, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    settings = Settings(data_dir=env, torch_threads=1)
    build_synthetic_store(settings, embedder, 1100)
    CORRUPTIONS[kind](settings.chroma_dir)

    assert main(["ingest", "--status"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(settings.chroma_dir) in line and "mlrag ingest --rebuild" in line
    release_embedded_client(settings.chroma_dir)

    assert main(["search", "gradient descent", "--retriever", "dense"]) == 2
    assert "mlrag ingest --rebuild" in _one_error_line(capsys.readouterr().err)
    release_embedded_client(settings.chroma_dir)


def test_rebuild_over_a_corrupt_index(
    env: Path, sources: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, fresh = _ingest(capsys, "--sources", str(sources))
    assert status == 0 and fresh["chunks_added"] > 0
    release_embedded_client(env / "chroma")
    CORRUPTIONS["truncated-sqlite"](env / "chroma")
    assert main(["ingest", "--status"]) == 2
    capsys.readouterr()
    release_embedded_client(env / "chroma")

    status, rebuilt = _ingest(capsys, "--rebuild", "--sources", str(sources))
    assert status == 0 and rebuilt["swapped"] is True
    assert rebuilt["chunks_added"] == fresh["chunks_added"]
    assert main(["ingest", "--status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chunks"] == fresh["chunks_added"]
    assert sorted(p.name for p in env.iterdir() if p.name.startswith("chroma")) == ["chroma"]


def test_failed_rebuild_keeps_the_live_index(
    env: Path, sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, fresh = _ingest(capsys, "--sources", str(sources))
    assert status == 0
    broken = tmp_path / "corpus" / "broken.toml"
    broken.write_text(sources.read_text() + '\n[[source]]\npath = "missing.md"\n')

    status, result = _ingest(capsys, "--rebuild", "--sources", str(broken))
    assert status == 1 and result["swapped"] is False
    assert main(["ingest", "--status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chunks"] == fresh["chunks_added"]
    assert not (env / "chroma.rebuild").exists()


def test_rebuild_refuses_a_chroma_server(env: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLRAG_CHROMA_URL", "http://127.0.0.1:9")
    assert main(["ingest", "--rebuild"]) == 2
    assert "embedded store only" in _one_error_line(capsys.readouterr().err)


# --- a full disk ---------------------------------------------------------------------------


def test_disk_full_exits_4_and_a_rerun_converges(
    env: Path,
    sources: Path,
    tmp_path: Path,
    embedder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chromadb.api.models.Collection import Collection

    real_upsert = Collection.upsert
    written: list[int] = []

    def fills_up(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
        if sum(written) >= 8:  # the disk "fills up" after two batches of four chunks
            raise sqlite3.OperationalError("database or disk is full")
        written.append(len(kwargs["ids"]))
        return real_upsert(self, *args, **kwargs)

    sources = write_corpus(tmp_path / "big", 4, sections=3, sentences=8)
    monkeypatch.setattr(Collection, "upsert", fills_up)
    assert main(["ingest", "--sources", str(sources), "--no-progress"]) == 4
    line = _one_error_line(capsys.readouterr().err)
    assert "disk full" in line and str(env / "chroma") in line
    assert sum(written) == 8

    monkeypatch.setattr(Collection, "upsert", real_upsert)  # space freed
    status, rerun = _ingest(capsys, "--sources", str(sources))
    assert status == 0
    clean = tmp_path / "clean"
    status, fresh = _ingest(capsys, "--sources", str(sources), "--data-dir", str(clean))
    assert status == 0
    assert rerun["chunks_added"] == fresh["chunks_added"] - 8  # the stored batches were kept
    assert _snapshot(env, embedder) == _snapshot(clean, embedder)


# --- backup and restore --------------------------------------------------------------------


def _search_ids(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, float]]:
    assert main(["search", "technique gradients losses", "--retriever", "dense", "--json"]) == 0
    return [
        (hit["chunk_id"], round(hit["score"], 5))
        for hit in json.loads(capsys.readouterr().out)["hits"]
    ]


def test_backup_wipe_restore(
    env: Path, sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, fresh = _ingest(capsys, "--sources", str(sources))
    assert status == 0
    feedback = '{"answer_id": "a1", "rating": 1}\n'
    (env / "feedback.jsonl").write_text(feedback, encoding="utf-8")
    before = _search_ids(capsys)
    assert before

    archive = tmp_path / "backups" / "mlrag.tar.gz"
    status, info = _ingest(capsys, "--backup", str(archive))
    assert status == 0 and archive.is_file()
    assert set(info["members"]) == {"chroma", "ingest_state.json", "feedback.jsonl"}

    release_embedded_client(env / "chroma")
    shutil.rmtree(env)
    status, _ = _ingest(capsys, "--restore", str(archive))
    assert status == 0
    assert main(["ingest", "--status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chunks"] == fresh["chunks_added"]
    assert _search_ids(capsys) == before
    assert (env / "feedback.jsonl").read_text(encoding="utf-8") == feedback
    # The restored ingest state still matches: nothing to do.
    status, again = _ingest(capsys, "--sources", str(sources), "--if-stale")
    assert status == 0 and again["chunks_added"] == 0

    # A data dir with an index is not overwritten without --force.
    assert main(["ingest", "--restore", str(archive)]) == 2
    assert "--force" in _one_error_line(capsys.readouterr().err)
    release_embedded_client(env / "chroma")
    status, _ = _ingest(capsys, "--restore", str(archive), "--force")
    assert status == 0 and _search_ids(capsys) == before


def test_backup_waits_for_the_ingest_lock(env: Path, sources, capsys, monkeypatch) -> None:
    status, _ = _ingest(capsys, "--sources", str(sources))
    assert status == 0
    monkeypatch.setenv("MLRAG_INGEST_LOCK_TIMEOUT_S", "0.2")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ingest_lock(Settings(data_dir=env)):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        assert main(["ingest", "--backup", str(env.parent / "b.tar.gz")]) == 2
        assert "another ingest holds" in _one_error_line(capsys.readouterr().err)
    finally:
        release.set()
        thread.join()
    assert not (env.parent / "b.tar.gz").exists()


def test_restore_refuses_what_is_not_a_backup(env: Path, tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not a tarball")
    assert main(["ingest", "--restore", str(bogus)]) == 2
    assert "not an mlrag backup" in _one_error_line(capsys.readouterr().err)


def test_help_lists_exit_codes_and_recovery(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    text = capsys.readouterr().out
    for needle in ("--rebuild", "--backup", "--restore", "--force", "exit status:", "  4  "):
        assert needle in text
