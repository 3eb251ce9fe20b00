"""The ``openai`` generator: answers on any OpenAI-compatible chat-completions server (vLLM,
llama.cpp's server, TGI, Ollama) through the official ``openai`` client.

* The prompt is the one every generator sends (:func:`rag.prompt.build_prompt`'s chat
  messages), decoded greedily (temperature 0) up to ``openai_max_tokens``.
* An adapter is a model name on the server (vLLM serves each LoRA adapter as its own model,
  ``--lora-modules NAME=PATH``), checked against the server's cached ``GET /v1/models``.
* Failures before the first token (connection refused, 429, 5xx) are retried with backoff,
  honouring Retry-After; after the first token nothing is retried (the text already sent
  would be duplicated): the stream raises and no :class:`AnswerEvent` follows.
* Closing the stream early closes the HTTP response, so the server stops generating.

Citations, grounding and abstention are the pipeline's work, as for every generator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from rag.errors import GenerationError
from rag.generation.base import model_answer, no_context_answer
from rag.openai_client import BACKOFF_BASE_S, openai_client, retry_wait, translate_error
from rag.openai_models import ServerModels
from rag.prompt import build_prompt
from rag.types import Answer, AnswerEvent, Hit, StreamEvent, TokenEvent, Turn

if TYPE_CHECKING:
    from rag.config import GenerationSettings

log = logging.getLogger(__name__)


def _llamacpp_timings(response: Any) -> dict[str, float]:
    """Prefill / decode milliseconds when the server reports them (llama.cpp's ``timings``)."""
    extra = getattr(response, "model_extra", None) or {}
    timings = extra.get("timings") or {}
    out: dict[str, float] = {}
    if isinstance(timings, dict):
        if "prompt_ms" in timings:
            out["prefill"] = float(timings["prompt_ms"])
        if "predicted_ms" in timings:
            out["decode"] = float(timings["predicted_ms"])
    return out


class OpenAIServerGenerator:
    """Answers with a model on an OpenAI-compatible server; implements
    :class:`rag.generation.base.Generator`."""

    name = "openai"

    def __init__(
        self,
        settings: GenerationSettings,
        client: Any | None = None,
        models: ServerModels | None = None,
        *,
        backoff_s: float = BACKOFF_BASE_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Use ``client`` (an ``openai.OpenAI``) if given, else one from the settings;
        ``backoff_s`` is the first retry's wait without Retry-After."""
        self.settings = settings
        self.client = client if client is not None else openai_client(settings)
        self.server = str(self.client.base_url)
        self.models = models or ServerModels(
            self.client,
            self.server,
            base_model=settings.openai_model,
            ttl_s=settings.openai_models_ttl_s,
        )
        self.max_retries = settings.openai_max_retries
        self.max_tokens = settings.openai_max_tokens
        self.backoff_s = backoff_s
        self._sleep = sleep

    # --- listings ------------------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        """Adapters the server serves (its listed models other than the base model)."""
        return self.models.adapter_names()

    def rewrite(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        """A short completion on the base model for the pipeline's helpers (condensing
        follow-ups); one attempt, no retries: the caller falls back to its heuristic."""
        try:
            response = self.client.chat.completions.create(
                model=self.models.model_for(None),
                messages=cast(Any, messages),  # plain role/content dicts
                max_tokens=max_tokens,
                temperature=0.0,
            )
        except Exception as exc:  # noqa: BLE001 - surfaced as the project's typed error
            raise GenerationError(f"inference server {self.server}: {exc}") from exc
        return (response.choices[0].message.content or "") if response.choices else ""

    # --- Generator interface -------------------------------------------------------------
    def generate(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Answer:
        """A complete answer (one non-streamed request, retried before it answers)."""
        model = self.models.model_for(adapter)
        if not hits:
            return no_context_answer(self.name, question, adapter)
        request = self._request(model, question, hits, history)
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                response = self.client.chat.completions.create(**request)
                break
            except Exception as exc:  # noqa: BLE001 - retry_wait raises the typed error
                self._sleep(
                    retry_wait(
                        exc, attempt, self.max_retries, self.server, backoff_s=self.backoff_s
                    )
                )
                attempt += 1
        elapsed = (time.perf_counter() - started) * 1000
        if not response.choices:
            raise GenerationError(f"inference server {self.server} returned no choices")
        choice = response.choices[0]
        text = (choice.message.content or "").strip()
        self._log(model, choice.finish_reason, elapsed, attempt)
        timings = {"generate": elapsed, **_llamacpp_timings(response)}
        return model_answer(self.name, question, hits, text, adapter, timings)

    def stream(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Token events as the server sends them, then one AnswerEvent.

        Checks (UnknownNameError) and the server's refusals happen on the first ``next()``,
        before any token. Closing the iterator closes the HTTP stream.
        """
        model = self.models.model_for(adapter)
        if not hits:
            answer = no_context_answer(self.name, question, adapter)
            yield TokenEvent(answer.text)
            yield AnswerEvent(answer)
            return
        request = self._request(model, question, hits, history)
        started = time.perf_counter()
        parts: list[str] = []
        timings: dict[str, float] = {}
        finish_reason: str | None = None
        attempt = 0
        while True:
            try:
                # Everything up to the first token is retryable: opening the stream and any
                # role-only chunks before the text.
                stream = self.client.chat.completions.create(**request, stream=True)
                try:
                    for chunk in stream:
                        for choice in chunk.choices:
                            piece = choice.delta.content if choice.delta else None
                            if choice.finish_reason:
                                finish_reason = choice.finish_reason
                            if not piece:
                                continue
                            # The answer is stripped at the end; hold back leading whitespace
                            # so the streamed text and the final answer agree.
                            if not parts and not piece.strip():
                                continue
                            if not parts:
                                timings["first_token"] = (time.perf_counter() - started) * 1000
                                piece = piece.lstrip()
                            parts.append(piece)
                            yield TokenEvent(piece)
                finally:
                    stream.close()  # consumer gone or failure: the server stops generating
                break
            except Exception as exc:  # noqa: BLE001 - typed below; GeneratorExit passes by
                if parts:
                    raise translate_error(exc, self.server, mid_answer=True) from exc
                self._sleep(
                    retry_wait(
                        exc, attempt, self.max_retries, self.server, backoff_s=self.backoff_s
                    )
                )
                attempt += 1
                finish_reason = None
        if finish_reason is None:
            where = "mid-answer" if parts else "before answering"
            raise GenerationError(
                f"inference server {self.server}: the stream ended {where} without a finish reason"
            )
        elapsed = (time.perf_counter() - started) * 1000
        timings["generate"] = elapsed
        if "first_token" in timings:
            timings["decode"] = elapsed - timings["first_token"]
        self._log(model, finish_reason, elapsed, attempt)
        text = "".join(parts).strip()
        yield AnswerEvent(model_answer(self.name, question, hits, text, adapter, timings))

    # --- helpers -------------------------------------------------------------------------
    def _request(
        self, model: str, question: str, hits: list[Hit], history: list[Turn] | None
    ) -> dict[str, Any]:
        """The chat-completions arguments: the shared prompt, greedy, length-limited."""
        return {
            "model": model,
            "messages": build_prompt(question, hits, history).chat_messages(),
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }

    def _log(self, model: str, finish_reason: str | None, elapsed_ms: float, retries: int) -> None:
        if finish_reason == "length":
            log.warning(
                "openai answer cut off at max_tokens=%d (model=%s); raise MLRAG_OPENAI_MAX_TOKENS",
                self.max_tokens,
                model,
            )
        log.info(
            "openai model=%s finish=%s retries=%d ms=%.0f",
            model,
            finish_reason,
            retries,
            elapsed_ms,
        )
