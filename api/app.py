"""The FastAPI application factory.

``create_app(settings)`` wires routes, error handlers, limits, metrics, the chat page and
(when a signing secret is set) the Slack bot. Models, the store and the indexes load once,
in the lifespan, in a worker thread; every request shares them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.access_log import AccessLogMiddleware
from api.deps import Services
from api.docs import install_docs, openapi_url
from api.errors import install_error_handlers
from api.feedback import FeedbackStore
from api.jobs import IngestJobs
from api.limits import (
    BodySizeLimitMiddleware,
    BodyTimeoutMiddleware,
    GenerationGate,
    RateLimiter,
)
from api.metrics import Metrics
from api.security_headers import SecurityHeadersMiddleware
from api.workers import WorkerHeaderMiddleware, generation_slots
from rag.config import Settings
from rag.errors import MlragError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The chat page loads only its own files; nothing from other hosts.
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def load_rag(settings: Settings) -> Any:
    """Build and warm the RAG pipeline (embedding model, store, default retriever/generator)."""
    from rag.pipeline import RAG

    rag = RAG.from_settings(settings)
    rag.warm_up()
    return rag


def build_services(settings: Settings, rag: Any = None) -> Services:
    """The shared state of one app. With several workers (``settings.workers``) the
    generation gate is this worker's share of the totals; rate limits stay per worker."""
    return Services(
        settings=settings,
        metrics=Metrics(),
        limiter=RateLimiter(settings.rate_limit_per_minute),
        gate=GenerationGate(*generation_slots(settings)),
        jobs=IngestJobs(),
        feedback=FeedbackStore(settings.data_dir / "feedback.jsonl"),
        rag=rag,
    )


async def _load_pipeline(services: Services) -> None:
    """Load the pipeline; on failure keep serving (/health answers, /ready says why, other
    routes answer 503 with the cause) and log one line."""
    try:
        services.rag = await anyio.to_thread.run_sync(load_rag, services.settings)
    except MlragError as exc:  # e.g. store_unavailable for a corrupt index
        services.load_failure = exc
        services.load_error = f"{exc.code}: {exc}"
        log.error("pipeline failed to load, serving /health only: %s", services.load_error)
    except Exception as exc:  # noqa: BLE001 - an unexpected failure must not kill the server
        services.load_error = f"internal_error: {type(exc).__name__}: {exc}"
        log.exception("pipeline failed to load, serving /health only")


def _share_jobs(services: Services) -> None:
    """With a Chroma server, publish ingest jobs there so every worker can report them."""
    store = getattr(services.rag, "store", None)
    if getattr(store, "server", False):
        from api.job_board import ChromaJobBoard

        services.jobs.attach(ChromaJobBoard(store.client, services.settings.collection))  # type: ignore[union-attr]


def create_app(settings: Settings | None = None, rag: Any = None) -> FastAPI:
    """The mlrag HTTP service. Pass ``rag`` to serve an existing pipeline (tests); otherwise
    it is built from ``settings`` at start-up."""
    settings = settings or Settings()
    services = build_services(settings, rag)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services.rag is None:
            await _load_pipeline(services)
        _share_jobs(services)
        try:
            yield
        finally:
            services.jobs.shutdown()
            services.metrics.close()
            if services.slack is not None:
                # Acknowledged Slack events are answered in bolt's threads: give them the
                # same grace as in-flight HTTP answers.
                await anyio.to_thread.run_sync(services.slack.shutdown, settings.shutdown_grace_s)

    app = FastAPI(
        title="mlrag",
        summary="Grounded, cited answers to machine-learning questions.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # api.docs serves /docs from local files, or not at all
        redoc_url=None,
        openapi_url=openapi_url(settings),
    )
    app.state.services = services
    install_error_handlers(app)
    install_docs(app, settings)

    from api.routes import (
        ask,
        chat_completions,
        documents,
        feedback,
        health,
        ingest,
        search,
        sources,
    )

    for module in (health, search, ask, chat_completions, ingest, sources, documents, feedback):
        app.include_router(module.router)

    if (
        settings.slack_signing_secret is not None
        and settings.slack_signing_secret.get_secret_value()
    ):
        from api.slack import mount_slack

        services.slack = mount_slack(app, services)

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": _PAGE_CSP}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Middleware: the last added is the outermost. The access log sees every response,
    # including 408s, 413s and CORS preflights, and all of them get the security headers.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(AccessLogMiddleware, metrics=services.metrics)
    if settings.workers > 1:
        app.add_middleware(WorkerHeaderMiddleware)
    return app


def app_from_env() -> FastAPI:
    """An app from environment settings (uvicorn ``--factory`` entry point of reload and of
    ``mlrag serve --workers N``, whose workers each call it)."""
    return create_app(Settings())
