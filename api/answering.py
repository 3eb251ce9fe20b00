"""Answering for the HTTP routes: request validation against the pipeline's registries,
one-shot answers in a worker thread, and streams that hold a generation slot until done."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from api.deps import Services, check_k, check_name, check_question
from api.doc_links import link_citations
from api.sse import iterate_blocking
from rag.errors import CapacityError, GenerationError
from rag.types import Answer, AnswerEvent, StreamEvent, TokenEvent, Turn

log = logging.getLogger(__name__)

# Generator names accepted besides the pipeline's registry.
GENERATOR_ALIASES = ("auto",)


@dataclass
class AskParams:
    """A validated answer request."""

    question: str
    k: int | None = None
    retriever: str | None = None
    generator: str | None = None
    adapter: str | None = None
    history: list[Turn] = field(default_factory=list)
    strict: bool = False
    filters: dict[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``RAG.ask`` / ``RAG.stream`` besides the question."""
        return {
            "k": self.k,
            "retriever": self.retriever,
            "generator": self.generator,
            "adapter": self.adapter,
            "history": self.history or None,
            "strict": self.strict,
            "filters": self.filters,
        }


def validate_ask(
    services: Services,
    question: str,
    *,
    k: int | None = None,
    retriever: str | None = None,
    generator: str | None = None,
    adapter: str | None = None,
    history: list[Turn] | None = None,
    strict: bool = False,
    filters: dict[str, Any] | None = None,
) -> AskParams:
    """Check an answer request (question length, k, registry names) before any work."""
    settings = services.settings
    rag = services.require_rag()
    check_name("retriever", retriever, list(rag.retriever_names()))
    check_name("generator", generator, [*rag.generator_names(), *GENERATOR_ALIASES])
    if adapter is not None:  # listing adapters may touch the local model stack: only when asked
        check_name("adapter", adapter, list(rag.adapter_names()))
    return AskParams(
        question=check_question(question, settings),
        k=check_k(k, settings),
        retriever=retriever,
        generator=generator,
        adapter=adapter,
        history=list(history or []),
        strict=strict,
        filters=filters,
    )


def record_answer(
    services: Services, state: Any, answer: Answer, streamed_tokens: int | None = None
) -> None:
    """Metrics and access-log fields of a finished answer."""
    services.metrics.observe_answer(answer, streamed_tokens)
    state.timings_ms = dict(answer.timings_ms)
    state.retriever = answer.retriever
    state.generator = answer.generator
    state.abstained = answer.abstained


def record_failure(services: Services, state: Any, code: str) -> None:
    """Metrics and access-log fields of a failed answer."""
    services.metrics.generation_errors.labels(code).inc()
    state.error_code = code


async def _acquire(services: Services) -> None:
    try:
        await services.gate.acquire()
    except CapacityError:
        services.metrics.capacity_rejections.inc()
        raise


async def answer_once(
    services: Services, state: Any, params: AskParams, link_base: str = ""
) -> Answer:
    """A complete answer, generated in a worker thread under a generation slot. Citations
    without a public URL link to the document view under ``link_base`` ("" = relative)."""
    rag = services.require_rag()
    await _acquire(services)
    try:
        answer: Answer = await anyio.to_thread.run_sync(
            partial(rag.ask, params.question, **params.kwargs())
        )
    except GenerationError as exc:
        record_failure(services, state, exc.code)
        raise
    finally:
        services.gate.release()
    record_answer(services, state, answer)
    return link_citations(answer, link_base)


async def open_answer_stream(
    services: Services, params: AskParams, link_base: str = ""
) -> AnswerStream:
    """Start streaming an answer. Failures before the first event raise here (so the route
    can still answer with a JSON error status); later ones raise from the returned iterator.
    The generation slot is held until the iterator is finished or closed. The final answer's
    URL-less citations link to the document view under ``link_base`` ("" = relative)."""
    rag = services.require_rag()
    await _acquire(services)
    try:
        events = iterate_blocking(
            partial(rag.stream, params.question, **params.kwargs()),
            services.settings.stream_idle_timeout_s,
        )
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise GenerationError("the generator ended without an answer") from None
    except BaseException:
        services.gate.release()
        raise

    return AnswerStream(first, events, services, link_base)


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
        if event_kind(event) == "answer":
            return AnswerEvent(link_citations(event.answer, self._link_base))  # type: ignore[union-attr]
        return event

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
