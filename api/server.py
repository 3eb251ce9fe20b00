"""Running the HTTP service under uvicorn (``mlrag serve`` and the tests' server processes)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.config import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings every ``mlrag serve`` uses: how long idle keep-alive connections
    stay open, and how long in-flight requests and streams may finish after SIGTERM."""
    return {
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        # The access log is ours (one JSON line per request, api.access); uvicorn's is redundant.
        "access_log": False,
    }


def worker_log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus the project's (the ``api`` loggers at
    ``log_level``, everything else at WARNING), applied in every worker process: spawned
    workers do not inherit the parent's logging set-up."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["mlrag"] = {
        "format": "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
    }
    config["handlers"]["mlrag"] = {
        "class": "logging.StreamHandler",
        "formatter": "mlrag",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["mlrag"], "level": "WARNING"}
    config["loggers"]["api"] = {"level": log_level.upper()}
    return config


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
