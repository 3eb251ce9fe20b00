"""Background ingest jobs started over HTTP: one worker thread runs them one at a time (the
ingest itself also locks the data directory) and records their progress in memory."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rag.errors import MlragError

log = logging.getLogger(__name__)


@dataclass
class IngestJob:
    """The state of one ingest job."""

    id: str
    sources: list[dict[str, Any]]
    status: str = "queued"  # queued | running | succeeded | failed
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/ingest/{id}``."""
        return {
            "id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": dict(self.progress),
            "summary": self.summary,
            "error": self.error,
            "sources": self.sources,
        }


# run(job, on_progress) -> summary dict
JobRunner = Callable[[IngestJob, Callable[[dict[str, Any]], None]], dict[str, Any]]


class IngestJobs:
    """Submits ingest jobs to a single worker thread and keeps the last ``keep`` jobs."""

    def __init__(self, keep: int = 100) -> None:
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlrag-ingest")
        return self._executor

    def submit(self, sources: list[dict[str, Any]], run: JobRunner) -> IngestJob:
        """Queue a job; ``run`` does the work in the worker thread."""
        job = IngestJob(id=uuid.uuid4().hex, sources=sources)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        self._pool().submit(self._run, job, run)
        return job

    def get(self, job_id: str) -> IngestJob | None:
        """A job by id (None when unknown or forgotten)."""
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[IngestJob]:
        """Known jobs, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def _run(self, job: IngestJob, run: JobRunner) -> None:
        job.status = "running"
        job.started_at = time.time()

        def on_progress(event: dict[str, Any]) -> None:
            job.progress = dict(event)

        try:
            job.summary = run(job, on_progress)
            job.status = "succeeded"
        except MlragError as exc:
            log.warning("ingest job %s failed: %s: %s", job.id, exc.code, exc)
            job.error = {"code": exc.code, "message": str(exc)}
            job.status = "failed"
        except Exception as exc:  # noqa: BLE001 - a job failure must be reported, not lost
            log.exception("ingest job %s failed", job.id)
            job.error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
            job.status = "failed"
        finally:
            job.finished_at = time.time()

    def shutdown(self) -> None:
        """Stop accepting jobs; a running job finishes in the background."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
