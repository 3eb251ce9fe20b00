"""``mlrag serve``: run the HTTP service (API, chat page, Slack bot) under uvicorn."""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.config import Settings


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the ``mlrag`` parser."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the HTTP API, the chat page and the Slack bot",
        description=(
            "Serve the JSON/SSE API (/v1/...), the chat page (/), /health, /ready, /metrics, "
            "OpenAPI docs (/docs, off by default when API keys are set) and, when "
            "MLRAG_SLACK_SIGNING_SECRET is set, /slack/events. Binds settings.host:settings.port "
            "(default 127.0.0.1:8000). On SIGTERM it stops accepting connections, lets running "
            "answers and streams finish (at most MLRAG_SHUTDOWN_GRACE_S) and exits 0."
        ),
    )
    parser.add_argument("--host", help="address to bind (default: settings.host)")
    parser.add_argument("--port", type=int, help="port to bind (default: settings.port)")
    parser.add_argument(
        "--reload", action="store_true", help="restart on code changes (development only)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.set_defaults(func=run_serve)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings every ``mlrag serve`` uses: how long idle keep-alive connections
    stay open, and how long in-flight requests and streams may finish after SIGTERM."""
    return {
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        # The access log is ours (one JSON line per request, api.access); uvicorn's is redundant.
        "access_log": False,
    }


def _exit_after_shutdown(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve_app(
    app: Any, settings: Settings, *, host: str, port: int, log_level: str, **extra: Any
) -> None:
    """Run ``app`` (an ASGI app, or an import string with ``extra``) under uvicorn until
    SIGINT or SIGTERM.

    On SIGTERM uvicorn stops accepting connections, lets in-flight requests and streams finish
    (at most ``settings.shutdown_grace_s``), runs the app's shutdown, then re-raises the
    signal; this handler makes that a normal exit (status 0) instead of death by SIGTERM."""
    import uvicorn

    previous = signal.signal(signal.SIGTERM, _exit_after_shutdown)
    try:
        uvicorn.run(
            app, host=host, port=port, log_level=log_level, **uvicorn_options(settings), **extra
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run uvicorn until interrupted."""
    host = args.host or settings.host
    port = args.port or settings.port
    logging.getLogger("api").setLevel(args.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    if args.reload:
        # Reload needs an import string; the factory re-reads settings from the environment.
        serve_app(
            "api.app:app_from_env",
            settings,
            host=host,
            port=port,
            log_level=args.log_level,
            factory=True,
            reload=True,
        )
        return 0
    from api.app import create_app

    settings = settings.model_copy(update={"host": host, "port": port})
    serve_app(create_app(settings), settings, host=host, port=port, log_level=args.log_level)
    return 0
