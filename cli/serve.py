"""``mlrag serve``: run the HTTP service (API, chat page, Slack bot) under uvicorn."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from api.server import serve_app

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
