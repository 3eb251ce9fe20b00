"""The ``claude`` generator: answers with the Anthropic Messages API and its native citations.

The retrieved chunks go to Claude as ``search_result`` content blocks with citations enabled
(generally available in anthropic 2.x, no beta header), so Claude returns text blocks that
carry ``search_result_location`` citations. Each cited text block gets our ``[n]`` markers
appended (``n`` = ``search_result_index + 1``, the hit's 1-based position) and the cited text
becomes the :class:`~rag.types.Citation` quote. Markers Claude writes itself are kept as they
are; the pipeline post-processes markers either way.

Failure policy (never a partial answer presented as complete):

* 429 / 5xx / 529 overloaded / timeouts / connection errors are retried by the SDK
  (``claude_max_retries``, exponential backoff honouring ``retry-after``); the final failure
  is :class:`~rag.errors.UpstreamUnavailableError`.
* 401/403 → :class:`~rag.errors.ModelUnavailableError`; other 4xx →
  :class:`~rag.errors.GenerationError` with the API's message.
* ``stop_reason == "max_tokens"`` (or ``refusal``, ``model_context_window_exceeded``) →
  :class:`~rag.errors.GenerationError`: a cut-off answer is an error, not a flagged answer,
  because :class:`~rag.types.Answer` has no "incomplete" field and a truncated claim with its
  citations would read as complete. In :meth:`ClaudeGenerator.stream` the tokens already sent
  stay sent, but no final answer event follows.
* A stream that fails mid-way (an SSE ``error`` event, a dropped connection, a timeout, or a
  body that ends before ``message_stop``) raises and never yields an ``AnswerEvent``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import anthropic
import httpx2  # the SDK's HTTP library (an httpx fork); mid-stream read errors surface raw

from rag.abstention import is_decline
from rag.citations import MARKER, parse_numbers
from rag.config import GenerationSettings
from rag.errors import (
    GenerationError,
    InvalidInputError,
    ModelUnavailableError,
    UpstreamUnavailableError,
)
from rag.prompt import ContextBlock, build_prompt
from rag.types import Answer, AnswerEvent, Citation, Hit, StreamEvent, TokenEvent, Turn

log = logging.getLogger(__name__)

# Stop reasons after which the text is a finished answer.
_COMPLETE_STOP_REASONS = frozenset({"end_turn", "stop_sequence"})
# In-stream error types that mean "Claude is busy", not "the request is wrong".
_TRANSIENT_ERROR_TYPES = frozenset({"overloaded_error", "rate_limit_error", "api_error"})


def search_result_block(block: ContextBlock) -> dict[str, Any]:
    """One context block as a ``search_result`` content block with citations enabled."""
    return {
        "type": "search_result",
        "source": block.source,
        "title": block.heading,
        "content": [{"type": "text", "text": block.text}],
        "citations": {"enabled": True},
    }


def build_request(
    question: str,
    hits: list[Hit],
    history: list[Turn] | None,
    *,
    model: str,
    max_tokens: int,
) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` / ``messages.stream`` for one question:
    the shared :class:`~rag.prompt.Prompt` rendered for Claude.

    The system prompt is one text block marked for prompt caching; the user turn holds one
    ``search_result`` block per hit with text (in rank order), then the question. Without hits
    the prompt's text turn (an empty context) is sent, so Claude abstains as the system prompt
    instructs."""
    prompt = build_prompt(question, [hit for hit in hits if hit.chunk.text.strip()], history)
    messages: list[dict[str, Any]] = list(prompt.history_messages())
    if prompt.blocks:
        content: list[dict[str, Any]] = [search_result_block(b) for b in prompt.blocks]
        content.append({"type": "text", "text": prompt.question_text()})
        messages.append({"role": "user", "content": content})
    else:
        messages.append({"role": "user", "content": prompt.user_message()})
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": prompt.system, "cache_control": {"type": "ephemeral"}}],
        "messages": messages,
    }


class _CitationMapper:
    """Turns native ``search_result_location`` citations into ``[n]`` markers and
    :class:`Citation` objects for one request's hits."""

    def __init__(self, hits: list[Hit]) -> None:
        # search_result_index counts the search_result blocks actually sent (empty chunks
        # are skipped), so map it back to the hit's 1-based position in ``hits``.
        self._positions = [i for i, hit in enumerate(hits, start=1) if hit.chunk.text.strip()]
        self._hits = hits
        self.citations: dict[int, Citation] = {}

    def numbers(self, citations: list[Any] | None) -> list[int]:
        """Block numbers cited by one text block (recording their citations)."""
        numbers: list[int] = []
        for cite in citations or []:
            if getattr(cite, "type", None) != "search_result_location":
                continue
            index = cite.search_result_index
            if not 0 <= index < len(self._positions):
                log.warning(
                    "claude cited search result %d of %d; ignored", index, len(self._positions)
                )
                continue
            n = self._positions[index]
            numbers.append(n)
            if n not in self.citations:
                chunk = self._hits[n - 1].chunk
                self.citations[n] = Citation(
                    n=n,
                    chunk_id=chunk.id,
                    source=chunk.source,
                    title=chunk.title,
                    url=chunk.url,
                    quote=cite.cited_text.strip(),
                    section=chunk.section,
                )
        return list(dict.fromkeys(numbers))

    def suffix(self, text: str, citations: list[Any] | None) -> str:
        """The markers to append after a text block: its cited numbers that the block does
        not already carry as markers Claude wrote itself."""
        written = {n for m in MARKER.finditer(text) for n in parse_numbers(m.group(1))}
        new = [n for n in self.numbers(citations) if n not in written]
        return " " + "".join(f"[{n}]" for n in new) if new else ""


def _with_markers(text: str, suffix: str) -> str:
    """``text`` with ``suffix`` placed before its trailing whitespace."""
    if not suffix:
        return text
    stripped = text.rstrip()
    return stripped + suffix + text[len(stripped) :]


def _check_stop_reason(stop_reason: str | None, max_tokens: int) -> None:
    if stop_reason in _COMPLETE_STOP_REASONS:
        return
    if stop_reason == "max_tokens":
        raise GenerationError(
            f"Claude's answer was cut off at max_tokens={max_tokens}; "
            "raise MLRAG_CLAUDE_MAX_TOKENS or ask a narrower question"
        )
    if stop_reason == "refusal":
        raise GenerationError("Claude declined to answer this question (stop_reason=refusal)")
    if stop_reason is None:
        raise GenerationError("Claude's stream ended before the answer was complete")
    raise GenerationError(f"Claude stopped without a complete answer (stop_reason={stop_reason})")


def _error_detail(err: anthropic.APIStatusError) -> str:
    """``"overloaded_error: Overloaded"`` from an API error (falls back to its message)."""
    if err.type or err.api_message:
        return f"{err.type or 'error'}: {err.api_message or ''}".strip()
    return err.message


@dataclass
class _StreamProgress:
    """Whether a stream has delivered its first event (after which nothing is retried)."""

    started: bool = False


class ClaudeGenerator:
    """Answers with Claude (Anthropic Messages API) using native search-result citations."""

    name = "claude"

    def __init__(
        self, settings: GenerationSettings, client: anthropic.Anthropic | None = None
    ) -> None:
        """Use ``client`` if given (tests, custom transports), else build one from the
        settings' key, base URL, timeout and retry count."""
        self.settings = settings
        self.model = settings.claude_model
        self.max_tokens = settings.claude_max_tokens
        if client is None:
            from rag.anthropic_client import anthropic_client

            client = anthropic_client(settings, "the 'claude' generator needs Claude")
        self.client = client

    # --- public API ----------------------------------------------------------------------

    def generate(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Answer:
        """A complete answer with native citations mapped to ``[n]`` markers."""
        request = self._request(question, hits, history, adapter)
        started = time.perf_counter()
        with self._api_errors():
            message = self.client.messages.create(**request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._log(message, len(hits), elapsed_ms)
        _check_stop_reason(message.stop_reason, self.max_tokens)
        return self._answer(question, hits, message.content, elapsed_ms)

    def stream(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Token events as Claude writes (markers follow each cited text block), then one
        :class:`AnswerEvent`; raises instead of a final event if the stream fails."""
        request = self._request(question, hits, history, adapter)
        mapper = _CitationMapper(hits)
        started = time.perf_counter()
        stopped = False
        # Trailing whitespace of the text so far is held back until the next text or the end
        # of the block, so markers land before it exactly as in the final answer text.
        pending = ""
        progress = _StreamProgress()
        with self._api_errors(progress), self.client.messages.stream(**request) as events:
            for event in events:
                progress.started = True
                if event.type == "text":
                    piece = pending + event.text
                    body = piece.rstrip()
                    pending = piece[len(body) :]
                    if body:
                        yield TokenEvent(body)
                elif event.type == "content_block_stop" and event.content_block.type == "text":
                    block = event.content_block
                    tail = mapper.suffix(block.text, block.citations) + pending
                    pending = ""
                    if tail:
                        yield TokenEvent(tail)
                elif event.type == "message_stop":
                    stopped = True
            if not stopped:
                raise GenerationError(
                    "Claude's stream ended before message_stop (incomplete answer)"
                )
            message = events.get_final_message()
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._log(message, len(hits), elapsed_ms)
        _check_stop_reason(message.stop_reason, self.max_tokens)
        yield AnswerEvent(self._answer(question, hits, message.content, elapsed_ms))

    def rewrite(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        """A short completion for the pipeline's helpers (condensing follow-ups): the system
        message becomes Claude's ``system``, the rest its messages."""
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        with self._api_errors():
            message = self.client.messages.create(
                model=self.model,
                max_tokens=max_tokens,
                system=system,
                messages=cast(Any, turns),  # plain role/content dicts
            )
        return "".join(b.text for b in message.content if b.type == "text")

    # --- helpers -------------------------------------------------------------------------

    def _request(
        self, question: str, hits: list[Hit], history: list[Turn] | None, adapter: str | None
    ) -> dict[str, Any]:
        if adapter is not None:
            raise InvalidInputError("the 'claude' generator does not take LoRA adapters")
        if not question.strip():
            raise InvalidInputError("the question is empty")
        return build_request(question, hits, history, model=self.model, max_tokens=self.max_tokens)

    def _answer(
        self, question: str, hits: list[Hit], content: list[Any], elapsed_ms: float
    ) -> Answer:
        mapper = _CitationMapper(hits)
        plain: list[str] = []
        marked: list[str] = []
        for block in content:
            if block.type != "text":
                continue
            plain.append(block.text)
            marked.append(_with_markers(block.text, mapper.suffix(block.text, block.citations)))
        raw = "".join(plain)
        abstained = is_decline(raw)
        return Answer(
            text=raw.strip() if abstained else "".join(marked).strip(),
            citations=[] if abstained else [mapper.citations[n] for n in sorted(mapper.citations)],
            abstained=abstained,
            generator=self.name,
            retriever=hits[0].retriever if hits else "",
            timings_ms={"generate": round(elapsed_ms, 1)},
            question=question,
            hits=list(hits),
        )

    def _log(self, message: Any, n_hits: int, elapsed_ms: float) -> None:
        usage = message.usage
        log.info(
            "claude model=%s hits=%d stop=%s in=%s out=%s cache_read=%s cache_write=%s ms=%.0f",
            message.model,
            n_hits,
            message.stop_reason,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
            elapsed_ms,
        )

    @contextmanager
    def _api_errors(self, progress: _StreamProgress | None = None) -> Iterator[None]:
        """Translate SDK and transport errors into the project's typed errors. ``progress``
        tells a stream that failed after its first event (never retried: the text already
        sent would be duplicated) from a request that failed after the SDK's retries."""
        retries = self.client.max_retries
        try:
            yield
        except (anthropic.APITimeoutError, httpx2.TimeoutException) as err:
            if progress is not None and progress.started:
                raise UpstreamUnavailableError(
                    f"Claude stream timed out mid-answer: {err}"
                ) from err
            raise UpstreamUnavailableError(
                f"Claude unavailable after {retries} retries: request timed out "
                f"(timeout {self.client.timeout}s)"
            ) from err
        except (anthropic.APIConnectionError, httpx2.TransportError) as err:
            # anthropic >= 2 wraps a read failure mid-stream as APIConnectionError; older
            # versions let httpx's error through. Both mean the same once events have arrived.
            if progress is not None and progress.started:
                raise UpstreamUnavailableError(
                    f"Claude connection dropped mid-answer: {err.__cause__ or err}"
                ) from err
            raise UpstreamUnavailableError(
                f"Claude unavailable after {retries} retries: connection failed ({err.__cause__ or err})"
            ) from err
        except anthropic.AuthenticationError as err:
            raise ModelUnavailableError(
                f"invalid API key for Claude ({_error_detail(err)})"
            ) from err
        except anthropic.PermissionDeniedError as err:
            raise ModelUnavailableError(
                f"the API key may not use Claude: {_error_detail(err)}"
            ) from err
        except anthropic.APIStatusError as err:
            detail = _error_detail(err)
            if err.status_code == 200:
                # An ``error`` event after the stream had started: the SDK cannot retry it.
                cls = (
                    UpstreamUnavailableError
                    if err.type in _TRANSIENT_ERROR_TYPES
                    else GenerationError
                )
                raise cls(f"Claude stream failed mid-answer: {detail}") from err
            if err.status_code in (408, 409, 429) or err.status_code >= 500:
                raise UpstreamUnavailableError(
                    f"Claude unavailable after {retries} retries: {detail}"
                ) from err
            raise GenerationError(
                f"Claude rejected the request ({err.status_code}): {detail}"
            ) from err
        except anthropic.APIError as err:
            raise GenerationError(f"Claude returned an unusable response: {err.message}") from err
