"""Admin routes: ``POST /v1/ingest`` starts a background ingest of the given sources,
``GET /v1/ingest/{job_id}`` reports its progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, status

from api.deps import AdminKey, Services, ServicesDep
from api.errors import ApiError
from api.ingest_safety import check_source
from api.jobs import IngestJob
from api.schemas import IngestJobOut, IngestRequest
from rag.errors import IngestLockedError

router = APIRouter(prefix="/v1", tags=["ingest"], dependencies=[AdminKey])


def _runner(services: Services, specs: list[Any], base_dir: Path | None, prune: bool) -> Any:
    def run(job: IngestJob, on_progress: Any) -> dict[str, Any]:
        from ingest.pipeline import run_ingest

        rag = services.require_rag()
        summary = run_ingest(
            services.settings,
            specs=specs,
            prune=prune,
            progress=False,
            on_progress=on_progress,
            store=rag.store,
            base_dir=base_dir,
            allow_private=services.settings.allow_private_urls,
        )
        return summary.to_dict()

    return run


def _check_shared_lock(services: Services) -> None:
    """409 when another process (another API worker, another machine, `mlrag ingest`) holds
    the Chroma server's ingest lock; this worker's own jobs queue behind each other."""
    from ingest.store_lock import StoreLock, describe_holder, process_owner

    store = getattr(services.require_rag(), "store", None)
    if store is None or not getattr(store, "server", False):
        return
    holder = StoreLock(store.client, services.settings.collection).holder()
    if holder is not None and holder.get("owner") != process_owner():
        raise IngestLockedError(
            f"another ingest is running: {describe_holder(holder)}; retry when it finishes"
        )


def _check_sources(
    body: IngestRequest, roots: list[Path], allow_private: bool
) -> list[tuple[str, Path | None]]:
    return [check_source(source, roots, allow_private) for source in body.sources]


@router.post(
    "/ingest",
    response_model=IngestJobOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start an ingest job",
)
async def start_ingest(body: IngestRequest, services: ServicesDep) -> Any:
    """Validate the sources (paths inside ``ingest_roots``; public http(s) URLs unless
    ``allow_private_urls``) and ingest them in the background."""
    from ingest.sources import SourceSpec

    settings = services.settings
    services.require_rag()
    await anyio.to_thread.run_sync(_check_shared_lock, services)
    # check_source resolves host names (getaddrinfo blocks) and touches the file system:
    # run it in a worker thread so a slow DNS server cannot stall every other request.
    checked = await anyio.to_thread.run_sync(
        _check_sources, body, settings.ingest_roots, settings.allow_private_urls
    )
    specs = []
    roots: set[Path] = set()
    for source, (location, root) in zip(body.sources, checked, strict=True):
        if root is not None:
            roots.add(root)
        specs.append(
            SourceSpec(
                kind=source.kind,
                location=location,
                title=source.title,
                topic=source.topic,
                format=source.format,
                depth=source.depth,
            )
        )
    if body.prune and len(roots) > 1:
        raise ApiError(400, "invalid_input", "prune needs all path sources under one ingest root")
    base_dir = next(iter(roots)) if len(roots) == 1 else None
    # Submitting publishes the job to the shared board (a Chroma call): off the event loop.
    job = await anyio.to_thread.run_sync(
        services.jobs.submit,
        [s.model_dump() for s in body.sources],
        _runner(services, specs, base_dir, body.prune),
    )
    return job.to_dict()


@router.get("/ingest/{job_id}", response_model=IngestJobOut, summary="Ingest job progress")
async def ingest_status(job_id: str, services: ServicesDep) -> Any:
    """The job's status, last progress event and, when finished, its summary or error (on
    any worker: jobs are published to the Chroma server)."""
    job = await anyio.to_thread.run_sync(services.jobs.get, job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no ingest job {job_id!r}")
    return job.to_dict()


@router.get("/ingest", response_model=list[IngestJobOut], summary="Recent ingest jobs")
async def list_jobs(services: ServicesDep) -> Any:
    """Recent jobs, oldest first: this worker's, and with several workers on a Chroma server
    every worker's."""
    return [job.to_dict() for job in await anyio.to_thread.run_sync(services.jobs.list)]
