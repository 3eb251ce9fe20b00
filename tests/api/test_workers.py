"""Several API workers: per-worker shares of the limits, the worker header, the ingest lock
that lives with the store, ingest jobs every worker can report, and metrics summed over
worker processes. Chroma's embedded client stands in for the server here (same core, same
semantics of add/delete/update); tests/api/test_workers_server.py uses a real one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from api.job_board import ChromaJobBoard
from api.jobs import IngestJobs
from api.workers import (
    WORKER_HEADER,
    generation_slots,
    local_model_warning,
    refusal,
    threads_per_worker,
    worker_environment,
)
from ingest.store_lock import StoreLock, shared_ingest_lock
from rag.config import Settings
from rag.errors import IngestLockedError
from tests.conftest import REPO_ROOT


@pytest.fixture
def chroma_client(tmp_path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )


# --- start-up rules ----------------------------------------------------------------------------
def test_embedded_store_refuses_several_workers(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path)
    assert refusal(embedded, 1) is None
    message = refusal(embedded, 2)
    assert message is not None
    assert "MLRAG_CHROMA_URL" in message and "--workers 1" in message
    assert refusal(Settings(data_dir=tmp_path, chroma_url="http://127.0.0.1:1"), 4) is None


def test_threads_are_split_between_workers() -> None:
    assert threads_per_worker(2, cores=8) == 4
    assert threads_per_worker(3, cores=2) == 1, "never zero threads"
    env = worker_environment(
        Settings(torch_threads=0, llamacpp_threads=6), host="0.0.0.0", port=9, workers=2, cores=8
    )
    assert env["MLRAG_TORCH_THREADS"] == "4", "automatic threads become cores / workers"
    assert "MLRAG_LLAMACPP_THREADS" not in env, "a thread count the user set is kept"
    assert (env["MLRAG_HOST"], env["MLRAG_PORT"], env["MLRAG_WORKERS"]) == ("0.0.0.0", "9", "2")


def test_generation_gate_is_divided_between_workers() -> None:
    settings = Settings(max_concurrent_generations=5, max_queued_generations=8)
    assert generation_slots(settings) == (5, 8)
    assert generation_slots(settings.model_copy(update={"workers": 2})) == (3, 4)
    assert generation_slots(settings.model_copy(update={"workers": 8})) == (1, 1)


def test_local_model_with_several_workers_recommends_an_inference_server(tmp_path: Path) -> None:
    local = Settings(data_dir=tmp_path, generator="local")
    assert local_model_warning(local, 1) is None
    warning = local_model_warning(local, 2)
    assert warning is not None and "MLRAG_OPENAI_BASE_URL" in warning
    served = local.model_copy(update={"generator": "openai", "openai_base_url": "http://x/v1"})
    assert local_model_warning(served, 2) is None
    assert local_model_warning(Settings(data_dir=tmp_path, generator="extractive"), 2) is None


def test_worker_header_only_with_several_workers(make_client) -> None:
    single = make_client()
    assert WORKER_HEADER.decode() not in single.get("/health").headers
    several = make_client(workers=2, chroma_url="http://127.0.0.1:1")
    assert several.get("/health").headers[WORKER_HEADER.decode()] == str(os.getpid())
    assert several.app.state.services.gate.max_active == 1  # 2 slots / 2 workers


# --- the ingest lock in the store ---------------------------------------------------------------
def test_store_lock_excludes_a_second_holder_until_released(chroma_client: Any) -> None:
    first = StoreLock(chroma_client, "mlrag")
    second = StoreLock(chroma_client, "mlrag")
    assert first.try_acquire()
    assert not second.try_acquire(), "a live lease is not taken over"
    assert first.held_by_me() and not second.held_by_me()
    with pytest.raises(IngestLockedError, match="another ingest"):
        second.acquire(timeout_s=0)
    second.release()  # not the owner: nothing happens
    assert first.held_by_me()
    assert first.renew()
    first.release()
    assert first.holder() is None
    assert second.try_acquire()


def test_an_expired_lease_is_taken_over(chroma_client: Any) -> None:
    crashed = StoreLock(chroma_client, "mlrag", lease_s=0.2)
    assert crashed.try_acquire()
    time.sleep(0.3)
    assert crashed.holder() is None
    successor = StoreLock(chroma_client, "mlrag")
    assert successor.try_acquire()
    assert not crashed.renew(), "the crashed holder learns it lost the lock"
    assert successor.held_by_me()


def test_shared_ingest_lock_is_held_for_the_block(chroma_client: Any, tmp_path: Path) -> None:
    class ServerStore:
        server = True
        client = chroma_client

    settings = Settings(data_dir=tmp_path, chroma_url="http://127.0.0.1:1")
    with (
        shared_ingest_lock(settings, ServerStore()),  # type: ignore[arg-type]
        pytest.raises(IngestLockedError),
    ):
        StoreLock(chroma_client, "mlrag").acquire(timeout_s=0)
    assert StoreLock(chroma_client, "mlrag").holder() is None


# --- ingest jobs every worker can report -----------------------------------------------------
def test_a_job_run_by_one_worker_is_reported_by_another(chroma_client: Any) -> None:
    worker_a, worker_b = IngestJobs(), IngestJobs()
    worker_a.attach(ChromaJobBoard(chroma_client, "mlrag"))
    worker_b.attach(ChromaJobBoard(chroma_client, "mlrag"))

    def run(job: Any, on_progress: Any) -> dict[str, Any]:
        on_progress({"stage": "embed", "documents_done": 1})
        return {"chunks_added": 3}

    job = worker_a.submit([{"kind": "path", "location": "a.md"}], run)
    # Worker A sets the final status in memory a moment before it publishes it, so wait on
    # what worker B sees (polling A first made this test flaky: B could still read "running").
    deadline = time.monotonic() + 10
    seen = worker_b.get(job.id)
    while seen is None or seen.status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "worker B never saw the job finish"
        time.sleep(0.05)
        seen = worker_b.get(job.id)
    assert worker_a.get(job.id).status == "succeeded"  # type: ignore[union-attr]
    assert seen is not None, "without the shared board worker B never heard of the job"
    assert seen.status == "succeeded" and seen.summary == {"chunks_added": 3}
    assert [j.id for j in worker_b.list()] == [job.id]
    assert worker_b.get("nope") is None
    worker_a.shutdown()


# --- metrics summed over worker processes -----------------------------------------------------
_COUNT = """
import sys
from api.metrics import Metrics
m = Metrics()
for _ in range(int(sys.argv[1])):
    m.rate_limited.inc()
m.in_flight.inc()
print(m.render().decode())
"""


def test_metrics_of_two_worker_processes_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _COUNT, str(n)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for n in (2, 3)
    ]
    assert "mlrag_rate_limited_total 5.0" in outputs[1], outputs[1]
