"""One JSON error shape for every 4xx/5xx: ``{"error": {"code", "message"}}``.

Core errors (:mod:`rag.errors`) carry their own ``code`` and ``http_status``; FastAPI's
validation errors, Starlette's 404/405 and anything unexpected are mapped here too, so a
client never sees an HTML or ad-hoc error body.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import CapacityError, MlragError

log = logging.getLogger(__name__)

# Seconds a client should wait after a capacity (503) refusal.
CAPACITY_RETRY_AFTER_S = 1

_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def status_code_name(status: int) -> str:
    """The error ``code`` used for a bare HTTP status (``404`` -> ``not_found``)."""
    return _STATUS_CODES.get(status, "http_error")


class ApiError(Exception):
    """An HTTP error raised by the API layer itself (auth, limits, missing resources)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The error JSON body."""
    return {"error": {"code": code, "message": message, **extra}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def mlrag_error_status(exc: MlragError) -> tuple[int, dict[str, str]]:
    """HTTP status and extra headers for a core error (capacity refusals say when to retry)."""
    headers = {"Retry-After": str(CAPACITY_RETRY_AFTER_S)} if isinstance(exc, CapacityError) else {}
    retry_after = getattr(exc, "retry_after", None)  # what an upstream server asked for
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if exc.http_status == 503 and "Retry-After" not in headers:
        headers["Retry-After"] = str(CAPACITY_RETRY_AFTER_S)
    return exc.http_status, headers


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _on_mlrag_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MlragError)
    status, headers = mlrag_error_status(exc)
    if isinstance(exc, CapacityError):
        log.info("request refused: %s", exc.code)  # expected under load; metrics count it
    elif status >= 500:
        log.warning("request failed: %s: %s", exc.code, exc)
    return error_response(status, exc.code, str(exc) or exc.code, headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "request body is not valid JSON")
    details = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors[:20]
    ]
    return error_response(422, "validation_error", _validation_message(errors), details=details)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = status_code_name(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    if exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, never to the client.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(MlragError, _on_mlrag_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
