"""``mlrag serve``: run the HTTP service (API, chat page, Slack bot) under uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from api.server import serve_app, worker_log_config

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
            "answers and streams finish (at most MLRAG_SHUTDOWN_GRACE_S) and exits 0. "
            "--workers N runs N worker processes on one port; N > 1 needs MLRAG_CHROMA_URL "
            "(a `chroma run` server) and exits 2 without it."
        ),
    )
    parser.add_argument("--host", help="address to bind (default: settings.host)")
    parser.add_argument("--port", type=int, help="port to bind (default: settings.port)")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: settings.workers, 1); more than 1 needs MLRAG_CHROMA_URL",
    )
    parser.add_argument(
        "--reload", action="store_true", help="restart on code changes (development only)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run uvicorn until interrupted (exit 2 when the worker count cannot work)."""
    from api.workers import refusal

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers if args.workers is not None else settings.workers
    problem = (
        "--workers must be at least 1"
        if workers < 1
        else "--reload runs one worker; drop --workers"
        if args.reload and workers > 1
        else refusal(settings, workers)
    )
    if problem is not None:
        print(f"mlrag serve: error: {problem}", file=sys.stderr)
        return 2
    logging.getLogger("api").setLevel(args.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    if workers > 1:
        return _serve_workers(args, settings, host, port, workers)
    if args.reload:
        # Reload needs an import string; the factory re-reads settings from the environment,
        # which carries the command line's choices.
        from api.workers import worker_environment

        os.environ.update(worker_environment(settings, host=host, port=port, workers=1))
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


def _serve_workers(
    args: argparse.Namespace, settings: Settings, host: str, port: int, workers: int
) -> int:
    """Run ``workers`` uvicorn worker processes, each building the app from the environment."""
    from api.metrics import MULTIPROC_ENV
    from api.workers import local_model_warning, worker_environment

    warning = local_model_warning(settings, workers)
    if warning is not None:
        logging.getLogger("api").warning(warning)
    env = worker_environment(settings, host=host, port=port, workers=workers)
    # Each worker writes its metrics to a shared folder; a fresh one per run, unless the
    # operator chose one (then clearing it between runs is theirs to do).
    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="mlrag-metrics-")
        env[MULTIPROC_ENV] = metrics_dir
    os.environ.update(env)
    try:
        serve_app(
            "api.app:app_from_env",
            settings,
            host=host,
            port=port,
            log_level=args.log_level,
            factory=True,
            workers=workers,
            log_config=worker_log_config(args.log_level),
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
