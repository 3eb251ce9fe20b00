"""Request ids, one structured JSON access-log line per request, and latency metrics.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so streamed responses are timed until
their last byte and client disconnects still reach the route.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import Metrics

access_log = logging.getLogger("api.access")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/ingest/{job_id}``), never the raw path, so
    metrics labels stay bounded; ``unmatched`` for 404s."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("path", "").startswith("/static/"):
        return "/static"
    return "unmatched"


class AccessLogMiddleware:
    """Assigns ``X-Request-ID``, logs one JSON line per request and records latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            duration = time.perf_counter() - started
            route = route_template(scope)
            self.metrics.request_latency.labels(
                scope.get("method", ""), route, str(status)
            ).observe(duration)
            record: dict[str, Any] = {
                "request_id": request_id,
                "method": scope.get("method", ""),
                "route": route,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0],
            }
            # Routes put timings (retrieve/generate ms) and outcome flags in request.state.
            for key in (
                "timings_ms",
                "retriever",
                "generator",
                "abstained",
                "error_code",
                "stream",
            ):
                if key in state:
                    record[key] = state[key]
            access_log.info(json.dumps(record, separators=(",", ":")))
