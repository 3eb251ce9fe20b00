"""Background ingest jobs started over HTTP: one worker thread runs them one at a time (the
ingest itself also locks the data directory, and with a Chroma server the store) and records
their progress in memory and, when a shared :class:`JobBoard` is attached (several API
workers on a Chroma server), in the board, where every worker can read it."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IngestJob:
        """The job a :meth:`to_dict` record describes (read from a shared board)."""
        fields: dict[str, Any] = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)

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

# Progress events reach a shared board at most this often (ingest reports every document).
PUBLISH_INTERVAL_S = 1.0


class JobBoard(Protocol):
    """Where job records live for every worker to read (api.job_board.ChromaJobBoard)."""

    def save(self, job: dict[str, Any]) -> None: ...

    def load(self, job_id: str) -> dict[str, Any] | None: ...

    def recent(self) -> list[dict[str, Any]]: ...


class IngestJobs:
    """Submits ingest jobs to a single worker thread and keeps the last ``keep`` jobs."""

    def __init__(self, keep: int = 100) -> None:
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.board: JobBoard | None = None

    def attach(self, board: JobBoard) -> None:
        """Publish jobs to ``board`` and look up other workers' jobs there."""
        self.board = board

    def _publish(self, job: IngestJob) -> None:
        if self.board is None:
            return
        try:
            self.board.save(job.to_dict())
        except Exception:  # noqa: BLE001 - the job runs on; its record catches up later
            log.warning("could not publish ingest job %s", job.id, exc_info=True)

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
        self._publish(job)
        self._pool().submit(self._run, job, run)
        return job

    def get(self, job_id: str) -> IngestJob | None:
        """A job by id (None when unknown or forgotten): this worker's own, else the
        shared board's record of another worker's job."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None or self.board is None:
            return job
        record = self.board.load(job_id)
        return IngestJob.from_dict(record) if record is not None else None

    def list(self) -> list[IngestJob]:
        """Known jobs, oldest first (every worker's, when a shared board is attached)."""
        with self._lock:
            own = dict(self._jobs)
        if self.board is None:
            return list(own.values())
        jobs = {record["id"]: IngestJob.from_dict(record) for record in self.board.recent()}
        jobs.update(own)  # this worker's jobs are fresher than their published records
        return sorted(jobs.values(), key=lambda job: job.created_at)[-self._keep :]

    def _run(self, job: IngestJob, run: JobRunner) -> None:
        job.status = "running"
        job.started_at = time.time()
        self._publish(job)
        published = time.monotonic()

        def on_progress(event: dict[str, Any]) -> None:
            nonlocal published
            job.progress = dict(event)
            if time.monotonic() - published >= PUBLISH_INTERVAL_S:
                published = time.monotonic()
                self._publish(job)

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
            self._publish(job)

    def shutdown(self) -> None:
        """Stop accepting jobs; a running job finishes in the background."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
