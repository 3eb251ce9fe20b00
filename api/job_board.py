"""Ingest job records kept in the Chroma server, so ``GET /v1/ingest/{id}`` answers on every
API worker, whichever worker runs the job.

One record per job in a small collection (``<collection>-ingest-jobs``): the job's JSON as
the document, its creation time as metadata. Only the worker running a job writes its
record; the others read it.
"""

from __future__ import annotations

import json
from typing import Any

from rag.errors import StoreUnavailableError


def jobs_collection_name(collection: str) -> str:
    """The collection holding the ingest jobs of ``collection``."""
    return f"{collection}-ingest-jobs"


class ChromaJobBoard:
    """Job records in a Chroma collection, shared by every worker on the server."""

    def __init__(self, client: Any, collection: str, keep: int = 100) -> None:
        self.client = client
        self.name = jobs_collection_name(collection)
        self.keep = keep
        self._collection: Any = None

    def _records(self) -> Any:
        if self._collection is None:
            try:
                self._collection = self.client.get_or_create_collection(
                    self.name, embedding_function=None
                )
            except Exception as exc:  # noqa: BLE001 - any client failure means the same
                raise StoreUnavailableError(
                    f"cannot open the job collection {self.name}: {exc}"
                ) from exc
        return self._collection

    def save(self, job: dict[str, Any]) -> None:
        """Write (or replace) one job's record."""
        self._records().upsert(
            ids=[job["id"]],
            embeddings=[[0.0]],
            documents=[json.dumps(job)],
            metadatas=[{"created_at": float(job["created_at"]), "status": job["status"]}],
        )

    def load(self, job_id: str) -> dict[str, Any] | None:
        """A job's record, or None when unknown."""
        found = self._records().get(ids=[job_id], include=["documents"])
        if not found["ids"]:
            return None
        return dict(json.loads(found["documents"][0]))

    def recent(self) -> list[dict[str, Any]]:
        """The last ``keep`` jobs, oldest first (older records are deleted here)."""
        records = self._records()
        found = records.get(include=["documents"])
        jobs = sorted(
            (json.loads(doc) for doc in found["documents"]), key=lambda job: job["created_at"]
        )
        if len(jobs) > self.keep:
            records.delete(ids=[job["id"] for job in jobs[: -self.keep]])
            jobs = jobs[-self.keep :]
        return jobs
