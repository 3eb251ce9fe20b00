"""Liveness, readiness, metrics and the names the chat page offers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import ApiKey, ServicesDep
from api.errors import error_response
from api.schemas import ConfigOut
from rag.errors import MlragError

router = APIRouter(tags=["service"])


@router.get("/health", summary="The process is up")
async def health() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/ready", summary="The index is loaded and non-empty", responses={503: {}})
async def ready(services: ServicesDep) -> Any:
    """200 when the pipeline is loaded and its index holds chunks; 503 otherwise."""
    rag = services.rag
    if rag is None:
        return error_response(
            503,
            "not_ready",
            services.load_error or "the index is not loaded yet",
            {"Retry-After": "5"},
        )
    try:
        ready = await anyio.to_thread.run_sync(rag.is_ready)
    except MlragError as exc:  # e.g. the store broke after start-up (store_unavailable)
        return error_response(503, "not_ready", f"{exc.code}: {exc}", {"Retry-After": "5"})
    if not ready:
        return error_response(
            503, "not_ready", "the index is empty; run an ingest first", {"Retry-After": "5"}
        )
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", dependencies=[ApiKey])
async def metrics(services: ServicesDep) -> Response:
    """The app's metrics in Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/config",
    response_model=ConfigOut,
    summary="Retriever, generator and adapter names",
    dependencies=[ApiKey],
)
async def config(services: ServicesDep) -> Any:
    """What clients may choose from, with the defaults."""
    settings = services.settings
    rag = services.rag
    return {
        "retrievers": list(rag.retriever_names()) if rag else [],
        "generators": list(rag.generator_names()) if rag else [],
        "adapters": list(rag.adapter_names()) if rag else [],
        "openai_adapters": _listed(rag.openai_adapter_names) if rag else [],
        "default_retriever": settings.retriever,
        "default_generator": settings.generator,
        "k": settings.k,
        "max_k": settings.max_k,
        "max_question_chars": settings.max_question_chars,
        "ready": rag is not None,
    }


def _listed(names: Callable[[], list[str]]) -> list[str]:
    """``names()``, or [] when the listing fails (an inference server that is down)."""
    try:
        return list(names())
    except MlragError:
        return []
