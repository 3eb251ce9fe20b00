"""``POST /v1/chat/completions``: the OpenAI chat-completions protocol over the RAG pipeline,
so OpenAI clients and UIs can use mlrag. ``model`` picks the generator (``mlrag`` = the
default, ``extractive``, ``claude``, ``local`` or ``local:<adapter>``); the last user message
is the question and earlier user/assistant messages are the history. Citations are appended
to the message content as numbered sources (and returned in a ``citations`` field)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from api.deps import ApiKey, ServicesDep
from api.doc_links import request_base_url
from api.errors import error_body
from api.schemas import ChatCompletionRequest, ChatMessage
from api.service import AnswerService, AnswerStream
from api.sse import SSE_HEADERS, ClosingStreamingResponse
from rag.errors import GenerationError, InvalidInputError, MlragError
from rag.render import render_sources_markdown
from rag.request import AskRequest
from rag.types import Answer, AnswerEvent, TokenEvent, Turn

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[ApiKey])

DEFAULT_MODEL = "mlrag"


def message_text(message: ChatMessage) -> str:
    """The text of a message whose content is a string or a list of text parts."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(part.text or "" for part in message.content if part.type == "text")


def parse_model(model: str) -> tuple[str | None, str | None]:
    """(generator, adapter) named by ``model``; ``mlrag`` means the configured default."""
    name, _, adapter = model.partition(":")
    name = name.strip()
    generator = None if name in ("", DEFAULT_MODEL) else name
    return generator, (adapter.strip() or None)


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """The question (last user message) and the history before it (system messages and tool
    messages are ignored: the pipeline's own prompt and rules apply)."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        raise InvalidInputError("messages must contain a user message")
    history = [
        Turn(role=m.role, content=message_text(m))
        for m in messages[:last_user]
        if m.role in ("user", "assistant") and message_text(m).strip()
    ]
    return message_text(messages[last_user]), history


def _citations(answer: Answer) -> list[dict[str, Any]]:
    return [] if answer.abstained else [dataclasses.asdict(c) for c in answer.citations]


def _usage(question: str, history: list[Turn], text: str) -> dict[str, int]:
    # Whitespace tokens: an honest approximation, the pipeline does not count model tokens.
    prompt = len(question.split()) + sum(len(t.content.split()) for t in history)
    completion = len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(
    completion_id: str, model: str, answer: Answer, history: list[Turn]
) -> dict[str, Any]:
    """A ``chat.completion`` object for a finished answer."""
    content = answer.text + render_sources_markdown(answer)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(answer.question, history, content),
        "citations": _citations(answer),
        "abstained": answer.abstained,
    }


def _chunk(
    completion_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> str:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def completion_chunks(
    answers: AnswerService, state: Any, stream: AnswerStream, completion_id: str, model: str
) -> AsyncIterator[str]:
    """``chat.completion.chunk`` SSE messages, then ``data: [DONE]``. Tokens stream as they
    come; the sources block follows the answer; a failure sends an ``error`` object."""
    state.stream = True
    created = int(time.time())
    tokens = 0
    answered = False
    try:
        yield _chunk(completion_id, model, created, {"role": "assistant", "content": ""})
        async for event in stream:
            if isinstance(event, TokenEvent):
                tokens += 1
                yield _chunk(completion_id, model, created, {"content": event.text})
            elif isinstance(event, AnswerEvent):
                answered = True
                answer: Answer = event.answer
                answers.record_answer(state, answer, streamed_tokens=tokens)
                extra = render_sources_markdown(answer)
                if extra:
                    yield _chunk(completion_id, model, created, {"content": extra})
                final = json.loads(_chunk(completion_id, model, created, {}, "stop")[6:])
                final["citations"] = _citations(answer)
                final["abstained"] = answer.abstained
                yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
        if not answered:
            raise GenerationError("the generator ended without an answer")
    except MlragError as exc:
        log.warning("chat completion stream failed: %s: %s", exc.code, exc)
        answers.record_failure(state, exc.code)
        yield f"data: {json.dumps(error_body(exc.code, str(exc) or exc.code))}\n\n"
    except Exception:
        log.exception("chat completion stream failed unexpectedly")
        answers.record_failure(state, "internal_error")
        yield f"data: {json.dumps(error_body('internal_error', 'the answer failed'))}\n\n"
    finally:
        await stream.aclose()
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", summary="OpenAI-compatible chat completions")
async def chat_completions(
    body: ChatCompletionRequest, request: Request, services: ServicesDep
) -> Any:
    """Answer the conversation's last user message (streamed with ``stream: true``)."""
    question, history = split_conversation(body.messages)
    generator, adapter = parse_model(body.model)
    answers = services.answers
    valid = answers.validate(
        AskRequest(question, generator=generator, adapter=adapter, history=tuple(history))
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    # OpenAI clients show the sources outside this service's pages: links must be absolute.
    link_base = request_base_url(request, services.settings)
    if not body.stream:
        answer = await answers.answer(valid, request.state, link_base)
        return completion_body(completion_id, body.model, answer, history)
    stream = await answers.open_stream(valid, link_base)
    return ClosingStreamingResponse(
        completion_chunks(answers, request.state, stream, completion_id, body.model),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        on_close=stream.aclose,
    )


@router.get("/models", summary="Models (generators) usable in chat completions")
async def models(services: ServicesDep) -> dict[str, Any]:
    """The OpenAI model list: ``mlrag``, each generator, and ``local:<adapter>``."""
    rag = services.require_rag()
    names = [DEFAULT_MODEL, *(g for g in rag.generator_names() if g != "auto")]
    # Without a local model stack, adapters are simply not offered.
    with contextlib.suppress(MlragError):
        names += [f"local:{a}" for a in rag.adapter_names()]
    with contextlib.suppress(MlragError):  # the inference server may be down or not configured
        names += [f"openai:{a}" for a in rag.openai_adapter_names()]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "mlrag"} for n in names],
    }
