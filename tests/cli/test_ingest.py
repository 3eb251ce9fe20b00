"""``mlrag ingest``: options, output shapes and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from tests.ingest.test_pipeline import write_corpus

SUMMARY_KEYS = {
    "documents",
    "chunks_added",
    "chunks_removed",
    "chunks_unchanged",
    "failed",
    "seconds",
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLRAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLRAG_TORCH_THREADS", "1")
    return data_dir


def _json_out(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out)


def test_help_mentions_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--sources",
        "--mirror",
        "--depth",
        "--prune",
        "--json",
        "--no-progress",
        "--status",
        "--data-dir",
        "--if-stale",
    ):
        assert option in text
    assert "MANIFEST.json" in text  # what a mirror is
    assert "delete" in text  # what prune deletes


def test_json_summary_keys_and_idempotent_rerun(env, tmp_path, capsys) -> None:
    pytest.importorskip("ingest.loaders")
    sources = write_corpus(tmp_path / "corpus", 2, sections=2, sentences=4)
    assert main(["ingest", "--sources", str(sources), "--json", "--no-progress"]) == 0
    first = _json_out(capsys)
    assert set(first) == SUMMARY_KEYS
    assert first["documents"] == 2 and first["chunks_added"] > 0 and first["failed"] == []

    assert main(["ingest", "--sources", str(sources), "--json", "--no-progress"]) == 0
    again = _json_out(capsys)
    assert again["chunks_added"] == 0 and again["chunks_unchanged"] == first["chunks_added"]

    assert main(["ingest", "--status", "--json"]) == 0
    status = _json_out(capsys)
    assert status["documents"] == 2 and status["chunks"] == first["chunks_added"]

    # --if-stale: nothing changed, so nothing is read or embedded
    assert main(["ingest", "--sources", str(sources), "--if-stale", "--json"]) == 0
    skipped = _json_out(capsys)
    assert set(skipped) == SUMMARY_KEYS and skipped["chunks_unchanged"] == first["chunks_added"]
    (tmp_path / "corpus" / "doc00.md").write_text(
        "# New\n\n" + "Fresh text about kernels. " * 30, encoding="utf-8"
    )
    assert main(["ingest", "--sources", str(sources), "--if-stale", "--json", "--no-progress"]) == 0
    assert _json_out(capsys)["chunks_added"] > 0


def test_failed_source_exit_1_and_human_summary(env, tmp_path, capsys) -> None:
    pytest.importorskip("ingest.loaders")
    sources = write_corpus(tmp_path / "corpus", 1, sections=1, sentences=4)
    with sources.open("a", encoding="utf-8") as fh:
        fh.write('\n[[source]]\npath = "nope.md"\n')
    assert main(["ingest", "--sources", str(sources), "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "ingested 1 documents" in out.out
    failure_lines = [line for line in out.err.splitlines() if "nope.md" in line]
    assert len(failure_lines) == 1


def test_bad_sources_file_is_one_line_exit_2(env, tmp_path, capsys) -> None:
    bad = tmp_path / "sources.toml"
    bad.write_text("[[source]]\npath = \n", encoding="utf-8")
    assert main(["ingest", "--sources", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "TOML" in err and str(bad) in err


def test_missing_sources_file_exit_2(env, tmp_path, capsys) -> None:
    assert main(["ingest", "--sources", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_mirror_without_manifest_exit_2(env, tmp_path, capsys) -> None:
    sources = tmp_path / "sources.toml"
    sources.write_text("", encoding="utf-8")
    assert main(["ingest", "--sources", str(sources), "--mirror", str(tmp_path)]) == 2
    assert "MANIFEST.json" in capsys.readouterr().err


def test_bad_depth_is_usage_error(env, tmp_path, capsys) -> None:
    assert main(["ingest", "--depth", "-1"]) == 2


def test_status_of_empty_index(env, capsys) -> None:
    assert main(["ingest", "--status"]) == 0
    out = capsys.readouterr().out
    assert "documents:      0" in out and "never ingested" in out


def test_data_dir_option_overrides_setting(env, tmp_path, capsys) -> None:
    other = tmp_path / "elsewhere"
    assert main(["ingest", "--status", "--json", "--data-dir", str(other)]) == 0
    assert str(other) in _json_out(capsys)["store"]
