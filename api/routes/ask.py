"""``POST /v1/ask``: a cited answer as JSON, or streamed as Server-Sent Events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from api.deps import ApiKey, ServicesDep
from api.errors import error_body
from api.schemas import AnswerOut, AskRequest
from api.service import AnswerService, AnswerStream
from api.sse import SSE_HEADERS, ClosingStreamingResponse, sse_event
from rag import request as core
from rag.errors import GenerationError, MlragError
from rag.types import AnswerEvent, TokenEvent, Turn

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["answers"], dependencies=[ApiKey])

_SSE_DOC = (
    "With `stream: true` or `Accept: text/event-stream`: `token` events ({text}), then one "
    "`answer` event (the Answer JSON), or an `error` event ({error: {code, message}})."
)


def wants_event_stream(request: Request, stream_flag: bool) -> bool:
    """Whether the client asked for SSE (body flag or Accept header)."""
    return stream_flag or "text/event-stream" in request.headers.get("accept", "")


async def answer_sse(
    answers: AnswerService, state: Any, stream: AnswerStream
) -> AsyncIterator[str]:
    """SSE messages of an answer stream; failures become one final ``error`` event."""
    state.stream = True
    tokens = 0
    answered = False
    try:
        async for event in stream:
            if isinstance(event, TokenEvent):
                tokens += 1
                yield sse_event("token", {"text": event.text})
            elif isinstance(event, AnswerEvent):
                answered = True
                answers.record_answer(state, event.answer, streamed_tokens=tokens)
                yield sse_event("answer", event.answer.to_dict())
        if not answered:
            raise GenerationError("the generator ended without an answer")
    except MlragError as exc:
        log.warning("answer stream failed: %s: %s", exc.code, exc)
        answers.record_failure(state, exc.code)
        yield sse_event("error", error_body(exc.code, str(exc) or exc.code))
    except Exception:
        log.exception("answer stream failed unexpectedly")
        answers.record_failure(state, "internal_error")
        yield sse_event("error", error_body("internal_error", "the answer failed"))
    finally:
        await stream.aclose()


@router.post(
    "/ask",
    response_model=AnswerOut,
    summary="Answer a question with citations",
    description=_SSE_DOC,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def ask(body: AskRequest, request: Request, services: ServicesDep) -> Any:
    """Answer ``body.question`` from the corpus, as JSON or as an SSE stream."""
    answers = services.answers
    valid = answers.validate(
        core.AskRequest(
            question=body.question,
            k=body.k,
            retriever=body.retriever,
            generator=body.generator,
            adapter=body.adapter,
            history=tuple(Turn(role=t.role, content=t.content) for t in body.history),
            strict=body.strict,
            filters=body.filters,
        )
    )
    if not wants_event_stream(request, body.stream):
        answer = await answers.answer(valid, request.state)
        return answer.to_dict()
    stream = await answers.open_stream(valid)
    return ClosingStreamingResponse(
        answer_sse(answers, request.state, stream),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        on_close=stream.aclose,
    )
