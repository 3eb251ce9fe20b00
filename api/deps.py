"""Shared services of one app (built once at start-up) and the typed dependencies routes use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from api.auth import bearer_token, check_admin_key, check_api_key, hash_key
from api.errors import ApiError
from api.limits import GenerationGate, RateLimiter, client_identity
from api.metrics import Metrics
from rag.config import Settings
from rag.errors import EmptyIndexError, InvalidInputError, MlragError, UnknownNameError

if TYPE_CHECKING:
    from api.feedback import FeedbackStore
    from api.jobs import IngestJobs


@dataclass
class Services:
    """Everything the routes share: settings, the RAG pipeline, limits, metrics, jobs."""

    settings: Settings
    metrics: Metrics
    limiter: RateLimiter
    gate: GenerationGate
    jobs: IngestJobs
    feedback: FeedbackStore
    rag: Any = None  # rag.pipeline.RAG (or a test double with the same interface)
    load_error: str | None = None  # "code: message" of a failed start-up, for /ready
    load_failure: MlragError | None = None
    slack: Any = None  # api.slack.SlackBot when the Slack route is mounted

    def require_rag(self) -> Any:
        """The loaded pipeline; while it is missing, the error that stopped it from loading
        (e.g. 503 store_unavailable for a corrupt index), or 503 empty_index."""
        if self.rag is None:
            if self.load_failure is not None:
                # Drop the previous raise's traceback, so it does not grow request by request.
                raise self.load_failure.with_traceback(None)
            raise EmptyIndexError(self.load_error or "the index is not loaded yet")
        return self.rag


def get_services(request: Request) -> Services:
    """The app's :class:`Services`."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def rate_limit(request: Request, services: ServicesDep) -> None:
    """Apply the per-client token bucket (429 + Retry-After when empty)."""
    if not services.limiter.enabled:
        return
    token = bearer_token(request)
    identity = client_identity(
        hash_key(token) if token else None, request.client.host if request.client else None
    )
    wait = services.limiter.try_acquire(identity)
    if wait > 0:
        services.metrics.rate_limited.inc()
        raise ApiError(
            429,
            "rate_limited",
            "too many requests; slow down",
            {"Retry-After": services.limiter.retry_after_header(wait)},
        )


def require_api_key(request: Request, services: ServicesDep) -> None:
    """API key check (when keys are configured), then the rate limit."""
    check_api_key(request, services.settings.api_key_hashes, services.settings.admin_key_hashes)
    rate_limit(request, services)


def require_admin(request: Request, services: ServicesDep) -> None:
    """Admin key check, then the rate limit."""
    check_admin_key(request, services.settings.admin_key_hashes)
    rate_limit(request, services)


ApiKey = Depends(require_api_key)
AdminKey = Depends(require_admin)


def check_question(question: str, settings: Settings) -> str:
    """The stripped question, or :class:`InvalidInputError` when empty or too long."""
    text = question.strip()
    if not text:
        raise InvalidInputError("question must not be empty")
    if len(text) > settings.max_question_chars:
        raise InvalidInputError(
            f"question is {len(text)} characters; the limit is {settings.max_question_chars}"
        )
    return text


def check_k(k: int | None, settings: Settings) -> int | None:
    """``k`` unchanged, or :class:`InvalidInputError` when above ``settings.max_k``."""
    if k is not None and k > settings.max_k:
        raise InvalidInputError(f"k must be between 1 and {settings.max_k}, got {k}")
    return k


def check_name(kind: str, name: str | None, known: list[str]) -> str | None:
    """``name`` unchanged when it is None or in ``known``; else :class:`UnknownNameError`."""
    if name is None or name in known:
        return name
    listed = ", ".join(known) or "none"
    raise UnknownNameError(f"unknown {kind} {name!r}; available: {listed}")
