"""Real-shaped Anthropic Messages API traffic for tests that run the real ``anthropic`` SDK
against an in-process transport (Claude cannot be reached from CI).

Reusable by any test that talks to Claude (generator, eval judge, data synthesizer):

* bodies: :func:`text_block`, :func:`search_result_citation`, :func:`message_body`,
  :func:`error_body`;
* streams: :func:`message_stream_events` turns a message body into the SSE events the API
  sends for it (``message_start`` … ``message_stop``), :func:`sse_bytes` encodes them;
* responses: :func:`json_response`, :func:`error_response`, :func:`sse_response` (which can
  drop the connection part-way);
* :class:`RecordingTransport`: an ``httpx2.MockTransport`` that answers from a script of
  responses and records every request the SDK sent;
* :func:`make_client`: an ``anthropic.Anthropic`` wired to a transport, whose retry waits are
  recorded (``client.retry_waits``) instead of slept.

Note: anthropic 2.x uses ``httpx2`` (a fork with the same API), not ``httpx``; the SDK
rejects ``httpx`` clients and transports, so everything here is built from ``httpx2``.

Shapes follow the Messages API reference and the SDK's own streaming fixtures
(anthropic-sdk-python ``tests/lib/streaming/fixtures/basic_response.txt``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

BASE_URL = "http://claude.test"
API_KEY = "test-key"
DEFAULT_MODEL = "claude-sonnet-4-5"

_ids = itertools.count(1)

# ---------------------------------------------------------------------------------------
# JSON bodies
# ---------------------------------------------------------------------------------------


def text_block(text: str, citations: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A response ``text`` content block; ``citations`` as the API returns them (or none)."""
    block: dict[str, Any] = {"type": "text", "text": text}
    if citations is not None:
        block["citations"] = list(citations)
    return block


def search_result_citation(
    search_result_index: int,
    cited_text: str,
    *,
    source: str = "",
    title: str | None = None,
    start_block_index: int = 0,
    end_block_index: int | None = None,
) -> dict[str, Any]:
    """A ``search_result_location`` citation pointing at the request's n-th (0-based)
    ``search_result`` block."""
    return {
        "type": "search_result_location",
        "cited_text": cited_text,
        "search_result_index": search_result_index,
        "source": source,
        "title": title,
        "start_block_index": start_block_index,
        "end_block_index": start_block_index + 1 if end_block_index is None else end_block_index,
    }


def usage(
    input_tokens: int = 120,
    output_tokens: int = 40,
    *,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
) -> dict[str, Any]:
    """A ``usage`` object as the API reports it."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
    }


def message_body(
    content: str | Sequence[dict[str, Any]],
    *,
    model: str = DEFAULT_MODEL,
    stop_reason: str | None = "end_turn",
    usage_: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A complete (non-streaming) Messages API response body.

    ``content`` is a plain string (one text block) or a list of content blocks."""
    blocks = [text_block(content)] if isinstance(content, str) else list(content)
    return {
        "id": message_id or f"msg_{next(_ids):024d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_ or usage(),
    }


def error_body(error_type: str, message: str, request_id: str = "req_test") -> dict[str, Any]:
    """The API's error body: ``{"type": "error", "error": {"type", "message"}, ...}``.

    Error types: invalid_request_error (400), authentication_error (401),
    permission_error (403), not_found_error (404), request_too_large (413),
    rate_limit_error (429), api_error (500), overloaded_error (529)."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


# ---------------------------------------------------------------------------------------
# Server-sent events
# ---------------------------------------------------------------------------------------

SseEvent = tuple[str, dict[str, Any]]


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def message_stream_events(
    body: dict[str, Any], *, delta_chars: int = 12, ping: bool = True
) -> list[SseEvent]:
    """The SSE events the API streams for ``body`` (a :func:`message_body`).

    Text is sent as ``text_delta`` pieces of ``delta_chars`` characters; each citation of a
    text block is sent as a ``citations_delta`` before the block's text (as the API does).
    ``stop_reason`` and the output token count arrive in ``message_delta``."""
    start_message = {**body, "content": [], "stop_reason": None, "stop_sequence": None}
    start_message["usage"] = {**body["usage"], "output_tokens": 1}
    events: list[SseEvent] = [
        ("message_start", {"type": "message_start", "message": start_message})
    ]
    for index, block in enumerate(body["content"]):
        if block["type"] != "text":
            raise ValueError(f"only text blocks can be streamed here, not {block['type']!r}")
        events.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        if ping and index == 0:
            events.append(("ping", {"type": "ping"}))
        for citation in block.get("citations") or []:
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "citations_delta", "citation": citation},
                    },
                )
            )
        for piece in _split(block["text"], delta_chars):
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": body["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def error_event(error_type: str, message: str) -> SseEvent:
    """An in-stream ``error`` event (e.g. ``overloaded_error``) as the API sends it after a
    200 response has started."""
    return ("error", {"type": "error", "error": {"type": error_type, "message": message}})


def sse_bytes(events: Iterable[SseEvent]) -> bytes:
    """Encode events as a ``text/event-stream`` body."""
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode(
        "utf-8"
    )


# ---------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"request-id": f"req_{next(_ids):08d}", **(extra or {})}


def json_response(body: dict[str, Any], status: int = 200) -> httpx2.Response:
    """A JSON response (a message body, or an error body with an error status)."""
    return httpx2.Response(status, json=body, headers=_headers())


def error_response(
    status: int, error_type: str, message: str, *, retry_after_ms: int | None = 1
) -> httpx2.Response:
    """An API error response. ``retry-after-ms`` (honoured by the SDK before its own
    exponential backoff) keeps retry waits tiny; pass ``None`` to omit it."""
    extra = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
    return httpx2.Response(status, json=error_body(error_type, message), headers=_headers(extra))


class _ByteChunks(httpx2.SyncByteStream):
    """A response body sent chunk by chunk that may fail part-way, like a dropped
    connection."""

    def __init__(self, chunks: Sequence[bytes], fail_with: BaseException | None) -> None:
        self._chunks = chunks
        self._fail_with = fail_with

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks
        if self._fail_with is not None:
            raise self._fail_with

    def close(self) -> None:
        pass


def sse_response(
    events: Sequence[SseEvent],
    *,
    fail_after: int | None = None,
    fail_with: BaseException | None = None,
) -> httpx2.Response:
    """A streaming (``text/event-stream``) response.

    With ``fail_after=k`` only the first ``k`` events are sent and then reading raises
    ``fail_with`` (default ``httpx2.ReadError``): the connection drops mid-answer."""
    if fail_after is not None:
        events = events[:fail_after]
        fail_with = fail_with or httpx2.ReadError("connection reset by peer")
    chunks = [sse_bytes([event]) for event in events]
    return httpx2.Response(
        200,
        headers=_headers({"content-type": "text/event-stream; charset=utf-8"}),
        stream=_ByteChunks(chunks, fail_with),
    )


# ---------------------------------------------------------------------------------------
# Transport and client
# ---------------------------------------------------------------------------------------

Reply = httpx2.Response | BaseException | Callable[[httpx2.Request], httpx2.Response]


@dataclass
class RecordedRequest:
    """One request as the SDK sent it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any] | None  # decoded JSON body

    @property
    def api_key(self) -> str | None:
        """The API key the SDK sent: anthropic 2.x sends ``Authorization: Bearer <key>``,
        1.x sent ``x-api-key``."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None


@dataclass
class RecordingTransport:
    """Answers the SDK from a script and records what it sent.

    ``replies`` are used in order, one per HTTP request (retries included): an
    ``httpx2.Response``, an exception to raise (``httpx2.ReadTimeout(...)`` for a timeout),
    or a callable ``request -> Response``. When the script is used up the last reply is
    repeated, so ``[error_response(529, ...)]`` answers every retry the same way."""

    replies: list[Reply]
    requests: list[RecordedRequest] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, httpx2.Response):
            # A response object can be read once; give each request a fresh copy of a
            # non-streaming one so a repeated last reply still works.
            if reply.stream is not None and not isinstance(reply.stream, _ByteChunks):
                return httpx2.Response(
                    reply.status_code, headers=reply.headers, content=reply.read()
                )
            return reply
        return reply(request)

    @property
    def last(self) -> RecordedRequest:
        """The most recent request."""
        return self.requests[-1]

    def mock(self) -> httpx2.MockTransport:
        """The ``httpx2.MockTransport`` to hand to an ``httpx2.Client``."""
        return httpx2.MockTransport(self)


class RecordingRetryAnthropic(anthropic.Anthropic):
    """``anthropic.Anthropic`` that records each retry wait the SDK computed (honouring
    ``retry-after`` headers, else exponential backoff with jitter) and then waits not at
    all, so retry tests are fast and can still check the backoff."""

    retry_waits: list[float]

    def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
        wait = super()._calculate_retry_timeout(*args, **kwargs)
        self.retry_waits.append(wait)
        return 0.0


def make_client(
    transport: RecordingTransport,
    *,
    max_retries: int = 2,
    timeout: float = 5.0,
    api_key: str = API_KEY,
) -> RecordingRetryAnthropic:
    """A real SDK client whose HTTP goes to ``transport``."""
    client = RecordingRetryAnthropic(
        api_key=api_key,
        base_url=BASE_URL,
        http_client=httpx2.Client(transport=transport.mock()),
        max_retries=max_retries,
        timeout=timeout,
    )
    client.retry_waits = []
    return client
