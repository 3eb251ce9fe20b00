"""The answer service: the one way every front door answers (``POST /v1/ask`` as JSON and
SSE, the OpenAI-compatible route, Slack).

A front door builds a core :class:`~rag.request.AskRequest`; :meth:`AnswerService.validate`
has the pipeline check it (one set of messages, raised as typed errors the front door maps to
its own output); the answer is then generated in a worker thread under a generation slot
(:class:`~api.limits.GenerationGate`: capacity limits and 503s), recorded in the metrics, and
its URL-less citations are linked to the document view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from api.doc_links import link_citations
from api.sse import iterate_blocking
from rag.errors import CapacityError, GenerationError
from rag.request import AskRequest, ValidRequest
from rag.types import Answer, AnswerEvent, StreamEvent, TokenEvent

if TYPE_CHECKING:
    from api.deps import Services

log = logging.getLogger(__name__)


class AnswerService:
    """Validation, generation slots, metrics and citation links around the pipeline."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def validate(self, request: AskRequest) -> ValidRequest:
        """``request`` checked by the pipeline (InvalidInputError / UnknownNameError, or
        EmptyIndexError-like errors when the pipeline is not loaded)."""
        return self.services.require_rag().validate(request)

    async def _acquire(self) -> None:
        try:
            await self.services.gate.acquire()
        except CapacityError:
            self.services.metrics.capacity_rejections.inc()
            raise

    async def answer(self, valid: ValidRequest, state: Any = None, link_base: str = "") -> Answer:
        """A complete answer, generated in a worker thread under a generation slot. Citations
        without a public URL link to the document view under ``link_base`` ("" = relative)."""
        rag = self.services.require_rag()
        await self._acquire()
        try:
            answer: Answer = await anyio.to_thread.run_sync(partial(rag.ask, valid))
        except GenerationError as exc:
            self.record_failure(state, exc.code)
            raise
        finally:
            self.services.gate.release()
        self.record_answer(state, answer)
        return link_citations(answer, link_base)

    def answer_from_thread(
        self, valid: ValidRequest, loop: asyncio.AbstractEventLoop, link_base: str = ""
    ) -> Answer:
        """:meth:`answer` from a worker thread that is not the event loop's (Slack's
        listeners): the same slot, metrics and links, run on the app's ``loop``."""
        future = asyncio.run_coroutine_threadsafe(self.answer(valid, None, link_base), loop)
        return future.result()

    async def open_stream(self, valid: ValidRequest, link_base: str = "") -> AnswerStream:
        """Start streaming an answer. Failures before the first event raise here (so the route
        can still answer with a JSON error status); later ones raise from the returned
        iterator. The generation slot is held until the iterator is finished or closed. The
        final answer's URL-less citations link to the document view under ``link_base``."""
        rag = self.services.require_rag()
        await self._acquire()
        try:
            events = iterate_blocking(
                partial(rag.stream, valid), self.services.settings.stream_idle_timeout_s
            )
            try:
                first = await anext(events)
            except StopAsyncIteration:
                raise GenerationError("the generator ended without an answer") from None
        except BaseException:
            self.services.gate.release()
            raise
        return AnswerStream(first, events, self.services, link_base)

    def record_answer(self, state: Any, answer: Answer, streamed_tokens: int | None = None) -> None:
        """Metrics and access-log fields of a finished answer (``state`` may be None)."""
        self.services.metrics.observe_answer(answer, streamed_tokens)
        if state is not None:
            state.timings_ms = dict(answer.timings_ms)
            state.retriever = answer.retriever
            state.generator = answer.generator
            state.abstained = answer.abstained

    def record_failure(self, state: Any, code: str) -> None:
        """Metrics and access-log fields of a failed answer (``state`` may be None)."""
        self.services.metrics.generation_errors.labels(code).inc()
        if state is not None:
            state.error_code = code


class AnswerStream:
    """The events of a started answer stream. :meth:`aclose` (idempotent, also safe when
    iteration never began) closes the generator and frees the generation slot."""

    def __init__(
        self,
        first: StreamEvent,
        events: AsyncIterator[StreamEvent],
        services: Services,
        link_base: str = "",
    ) -> None:
        self._pending: StreamEvent | None = first
        self._events = events
        self._services = services
        self._link_base = link_base
        self._closed = False

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._closed:
            raise StopAsyncIteration
        if self._pending is not None:
            event, self._pending = self._pending, None
        else:
            event = await anext(self._events)
        # Test doubles may send other event classes with a ``type``: normalise them here, so
        # the front doors can rely on the two core event types.
        kind = event_kind(event)
        if kind == "answer":
            answer: Answer = getattr(event, "answer")  # noqa: B009 - any event with an answer
            return AnswerEvent(link_citations(answer, self._link_base))
        if isinstance(event, TokenEvent):
            return event
        return TokenEvent(str(getattr(event, "text", "")))

    async def aclose(self) -> None:
        """Close the underlying stream and release the slot (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._events.aclose()  # type: ignore[attr-defined]
        finally:
            self._services.gate.release()


def event_kind(event: Any) -> str:
    """``token`` or ``answer`` (test doubles may use other event classes with ``type``)."""
    if isinstance(event, TokenEvent | AnswerEvent):
        return event.type
    return str(getattr(event, "type", ""))
