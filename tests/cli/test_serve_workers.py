"""``mlrag serve --workers N``: refused on the embedded store (exit 2, one line naming the
fix); with a Chroma server, uvicorn workers built by the app factory from an environment
that carries the command line's host and port, split threads and a shared metrics folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli.serve
from cli.main import main


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """``mlrag serve`` writes the workers' environment into os.environ; undo it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What serve_app was called with, and the environment the workers would inherit."""
    calls: list[dict[str, Any]] = []

    def fake_serve_app(app: Any, settings: Any, **options: Any) -> None:
        from rag.config import Settings

        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        calls.append(
            {
                "app": app,
                "options": options,
                "worker_settings": Settings(),  # what each worker's factory reads
                "metrics_dir": metrics_dir,
                "metrics_dir_existed": bool(metrics_dir) and Path(metrics_dir).is_dir(),
            }
        )

    monkeypatch.setattr(cli.serve, "serve_app", fake_serve_app)
    return calls


def test_several_workers_on_the_embedded_store_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, started
) -> None:
    monkeypatch.setenv("MLRAG_DATA_DIR", str(tmp_path))
    assert main(["serve", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "MLRAG_CHROMA_URL" in err and "--workers 1" in err
    assert started == [], "nothing was started"


def test_workers_get_the_command_line_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started
) -> None:
    monkeypatch.setenv("MLRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLRAG_CHROMA_URL", "http://127.0.0.1:8001")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert main(["serve", "--workers", "2", "--host", "0.0.0.0", "--port", "8123"]) == 0
    [call] = started
    assert call["app"] == "api.app:app_from_env"
    options = call["options"]
    assert options["factory"] is True and options["workers"] == 2
    assert (options["host"], options["port"]) == ("0.0.0.0", 8123)
    worker = call["worker_settings"]
    assert (worker.host, worker.port, worker.workers) == ("0.0.0.0", 8123, 2)
    assert worker.torch_threads == 4 and worker.llamacpp_threads == 4
    assert call["metrics_dir_existed"], "a shared metrics folder exists while workers run"
    assert not Path(call["metrics_dir"]).exists(), "and is removed afterwards"
    assert "api" in options["log_config"]["loggers"], "workers log the project's lines"


def test_one_worker_serves_in_process(tmp_path: Path, monkeypatch, started) -> None:
    monkeypatch.setenv("MLRAG_DATA_DIR", str(tmp_path))
    assert main(["serve", "--port", "8124"]) == 0
    [call] = started
    assert not isinstance(call["app"], str) and "workers" not in call["options"]


def test_local_model_with_several_workers_logs_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started, caplog
) -> None:
    monkeypatch.setenv("MLRAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLRAG_CHROMA_URL", "http://127.0.0.1:8001")
    monkeypatch.setenv("MLRAG_GENERATOR", "local")
    with caplog.at_level(logging.WARNING, logger="api"):
        assert main(["serve", "--workers", "3"]) == 0
    warnings = [r for r in caplog.records if "MLRAG_OPENAI_BASE_URL" in r.getMessage()]
    assert len(warnings) == 1
