"""Shared services of one app (built once at start-up) and the typed dependencies routes use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Request

from api.auth import bearer_token, check_admin_key, check_api_key, hash_key
from api.errors import ApiError
from api.limits import GenerationGate, RateLimiter, client_identity
from api.metrics import Metrics
from rag.config import Settings
from rag.errors import EmptyIndexError, MlragError

if TYPE_CHECKING:
    from api.feedback import FeedbackStore
    from api.jobs import IngestJobs
    from api.service import AnswerService
    from rag.request import AskRequest, ValidRequest
    from rag.store import ChunkStore
    from rag.types import Answer, Hit, StreamEvent


class Pipeline(Protocol):
    """What the HTTP layer uses of rag.pipeline.RAG (tests pass a double with this shape)."""

    @property
    def store(self) -> ChunkStore: ...

    def validate(self, request: AskRequest | ValidRequest) -> ValidRequest: ...

    def ask(self, request: AskRequest | ValidRequest | str, **options: Any) -> Answer: ...

    def stream(
        self, request: AskRequest | ValidRequest | str, **options: Any
    ) -> Iterator[StreamEvent]: ...

    def search(
        self,
        query: str,
        *,
        k: int | None = None,
        retriever: str | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[Hit]: ...

    def is_ready(self) -> bool: ...

    def warm_up(self) -> None: ...

    def retriever_names(self) -> list[str]: ...

    def generator_names(self) -> list[str]: ...

    def adapter_names(self) -> list[str]: ...

    def openai_adapter_names(self) -> list[str]: ...

    def document_summaries(self) -> list[dict[str, Any]]: ...


@dataclass
class Services:
    """Everything the routes share: settings, the RAG pipeline, limits, metrics, jobs."""

    settings: Settings
    metrics: Metrics
    limiter: RateLimiter
    gate: GenerationGate
    jobs: IngestJobs
    feedback: FeedbackStore
    rag: Pipeline | None = None  # rag.pipeline.RAG (or a test double with the same interface)
    load_error: str | None = None  # "code: message" of a failed start-up, for /ready
    load_failure: MlragError | None = None
    slack: Any = None  # api.slack.SlackBot when the Slack route is mounted

    @property
    def answers(self) -> AnswerService:
        """The one answer service every front door uses (HTTP, SSE, OpenAI route, Slack)."""
        from api.service import AnswerService

        return AnswerService(self)

    def require_rag(self) -> Pipeline:
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
