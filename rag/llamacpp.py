"""GGUF models on llama.cpp, in process (``xllamacpp``: llama.cpp's server without the HTTP).

* One :class:`LlamaCppModel` per model file (and context size / threads) per process:
  :func:`shared_model` hands out the same instance to every generator, and the weights load on
  the first request.
* One generation at a time behind the project's bounded queue
  (:class:`rag.local_models.GenerationQueue`, ``local_queue_size``: CapacityError when full).
  The server has a single slot, so the KV cache of the previous prompt stays in it and
  llama.cpp reuses its longest common prefix (``cache_prompt``): callers put the fixed system
  prompt first and keep it byte-identical, so only the varying part is prefilled again.
* Greedy decoding (temperature 0) with a ``max_tokens`` limit.
* Streaming: the server calls a callback for each chunk on a worker thread; the callback
  feeds a queue the consumer's iterator reads. Closing the iterator makes the callback return
  True, which stops the generation at the next token, and the slot is freed once it has.
* LoRA adapters in GGUF form are loaded with the model (``CommonParams.lora_adapters``) and
  chosen per request (``"lora": [{"id", "scale"}]``), every other adapter at scale 0.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import GenerationError, ModelUnavailableError
from rag.local_models import GenerationQueue
from rag.model_files import check_size

if TYPE_CHECKING:
    from rag.config import Settings

log = logging.getLogger(__name__)

_DONE = object()  # end of a stream on the bridge queue


@dataclass
class ChatResult:
    """One finished chat completion: the text and llama.cpp's own accounting."""

    text: str
    finish_reason: str | None = None
    # llama.cpp's ``timings``: prompt_n / prompt_ms (prefill), cache_n (prompt tokens reused
    # from the KV cache), predicted_n / predicted_ms (decode).
    timings: dict[str, float] = field(default_factory=dict)
    first_token_ms: float | None = None


def _error_message(payload: dict[str, Any]) -> str | None:
    """The error text of a llama.cpp error payload, None for a normal chunk/response."""
    if "choices" in payload:
        return None
    error = payload.get("error", payload)
    if isinstance(error, dict) and ("message" in error or "code" in error):
        return str(error.get("message") or error.get("code"))
    return None


class ChatStream:
    """Text deltas of one streamed chat completion; :attr:`result` is set once it ends.

    Close it (or let it be garbage-collected) to cancel the generation.
    """

    def __init__(self) -> None:
        self._iterator: Any = iter(())  # set by LlamaCppModel.stream
        self.result: ChatResult | None = None

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._iterator)

    def close(self) -> None:
        """Stop the generation (if running) and free the model."""
        self._iterator.close()


class LlamaCppModel:
    """One GGUF model served by an in-process llama.cpp server (loaded lazily, once)."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 4096,
        threads: int = 1,
        queue_size: int = 4,
    ) -> None:
        self.path = Path(path)
        self.n_ctx = n_ctx
        self.threads = threads
        self.queue = GenerationQueue(queue_size)
        self._load_lock = threading.Lock()
        self._server: Any = None
        self._params: Any = None
        self._adapters: list[Path] = []  # loaded LoRA files; a request's "lora" ids index it

    # --- loading -------------------------------------------------------------------------
    @property
    def params(self) -> Any:
        """The ``xllamacpp.CommonParams`` the server runs with (loads the model)."""
        self._ensure_loaded(self._adapters)
        return self._params

    @property
    def is_loaded(self) -> bool:
        """Whether the model is loaded."""
        return self._server is not None

    def _build_params(self, adapters: list[Path]) -> Any:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = self.n_ctx
        # One slot: generations are serialised by the queue anyway, and a single slot keeps
        # the previous prompt's KV cache for prefix reuse.
        params.n_parallel = 1
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.warmup = False  # a warm-up decode costs seconds on 2 cores and buys nothing
        params.verbosity = -1
        if adapters:
            params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(p), 0.0) for p in adapters]
            params.lora_init_without_apply = True  # scales come with each request
        return params

    def _ensure_loaded(self, adapters: list[Path]) -> None:
        """Load the model with exactly ``adapters`` (a new adapter set reloads it)."""
        if self._server is not None and adapters == self._adapters:
            return
        with self._load_lock:
            if self._server is not None and adapters == self._adapters:
                return
            if not self.path.is_file():
                raise ModelUnavailableError(f"GGUF model file not found: {self.path}")
            check_size(self.path)
            try:
                import xllamacpp
            except ImportError as exc:
                raise ModelUnavailableError(
                    "the llama.cpp runtime needs the 'xllamacpp' package (pip install xllamacpp), "
                    "or set local_runtime=transformers"
                ) from exc
            self._server = None  # free the old model before loading the new one
            params = self._build_params(adapters)
            started = time.perf_counter()
            try:
                server = xllamacpp.Server(params)
            except Exception as exc:  # noqa: BLE001 - any load failure means the same
                names = ", ".join(p.parent.name for p in adapters)
                detail = f" with adapters {names}" if adapters else ""
                raise ModelUnavailableError(
                    f"llama.cpp cannot load {self.path.name}{detail}: {exc}"
                ) from exc
            self._server, self._params, self._adapters = server, params, list(adapters)
            log.info(
                "loaded %s on llama.cpp in %.1f s (n_ctx=%d, threads=%d, adapters=%d)",
                self.path.name,
                time.perf_counter() - started,
                self.n_ctx,
                self.threads,
                len(adapters),
            )

    def _request(
        self, messages: list[dict[str, str]], max_tokens: int, adapter: Path | None, stream: bool
    ) -> dict[str, Any]:
        """The chat request body; loads the model (and ``adapter``) when needed."""
        adapters = list(self._adapters)
        if adapter is not None and adapter not in adapters:
            adapters.append(adapter)
        self._ensure_loaded(adapters)
        body: dict[str, Any] = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,  # greedy
            "cache_prompt": True,  # reuse the KV cache of the common prefix (system prompt)
            "stream": stream,
        }
        if self._adapters:
            # Every loaded adapter gets a scale: omitted ones would run at their load scale.
            body["lora"] = [
                {"id": i, "scale": 1.0 if path == adapter else 0.0}
                for i, path in enumerate(self._adapters)
            ]
        return body

    # --- chat ----------------------------------------------------------------------------
    def complete(
        self, messages: list[dict[str, str]], max_tokens: int, adapter: Path | None = None
    ) -> ChatResult:
        """A whole answer. CapacityError when the queue is full, GenerationError on failure."""
        with self.queue.turn():
            body = self._request(messages, max_tokens, adapter, stream=False)
            try:
                response = self._server.handle_chat_completions(body)
            except Exception as exc:  # noqa: BLE001 - surfaced as one typed error
                raise GenerationError(f"llama.cpp generation failed: {exc}") from exc
        error = _error_message(response)
        if error is not None:
            raise GenerationError(f"llama.cpp generation failed: {error}")
        choice = response["choices"][0]
        return ChatResult(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            timings=dict(response.get("timings") or {}),
        )

    def stream(
        self, messages: list[dict[str, str]], max_tokens: int, adapter: Path | None = None
    ) -> ChatStream:
        """Text deltas as they are decoded. Admission (CapacityError) happens on the first
        ``next()``; closing the stream cancels the generation."""
        holder = ChatStream()
        holder._iterator = self._stream(messages, max_tokens, adapter, holder)
        return holder

    def _stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        adapter: Path | None,
        holder: ChatStream,
    ) -> Iterator[str]:
        with self.queue.turn():
            body = self._request(messages, max_tokens, adapter, stream=True)
            bridge: queue.Queue[Any] = queue.Queue()
            cancel = threading.Event()
            final: dict[str, Any] = {}

            def on_chunk(chunk: dict[str, Any]) -> bool:
                # Runs on the worker thread, inside llama.cpp; True stops the generation.
                error = _error_message(chunk)
                if error is not None:
                    final["error"] = error
                    return True
                for choice in chunk.get("choices", []):
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        bridge.put(content)
                    if choice.get("finish_reason"):
                        final["finish_reason"] = choice["finish_reason"]
                if chunk.get("timings"):
                    final["timings"] = chunk["timings"]
                return cancel.is_set()

            def run() -> None:
                try:
                    self._server.handle_chat_completions(body, on_chunk)
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    final["error"] = str(exc)
                finally:
                    bridge.put(_DONE)

            started = time.perf_counter()
            first_token_ms: float | None = None
            parts: list[str] = []
            worker = threading.Thread(target=run, name="mlrag-llamacpp", daemon=True)
            worker.start()
            try:
                while (item := bridge.get()) is not _DONE:
                    if first_token_ms is None:
                        first_token_ms = (time.perf_counter() - started) * 1000
                    parts.append(item)
                    yield item
            finally:
                # Normal end: a no-op. Consumer gone: the callback stops llama.cpp at the next
                # token; keep the slot until the worker is out of the server.
                cancel.set()
                worker.join()
        if "error" in final:
            raise GenerationError(f"llama.cpp generation failed: {final['error']}")
        holder.result = ChatResult(
            text="".join(parts),
            finish_reason=final.get("finish_reason"),
            timings=dict(final.get("timings") or {}),
            first_token_ms=first_token_ms,
        )

    def chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        stream: bool = False,
        adapter: Path | None = None,
    ) -> str | ChatStream:
        """The answer text, or with ``stream`` an iterator of text deltas."""
        if stream:
            return self.stream(messages, max_tokens, adapter)
        return self.complete(messages, max_tokens, adapter).text

    @property
    def waiting(self) -> int:
        """Requests waiting for the model."""
        return self.queue.waiting


_MODELS: dict[tuple[str, int, int], LlamaCppModel] = {}
_MODELS_LOCK = threading.Lock()


def shared_model(path: Path, settings: Settings) -> LlamaCppModel:
    """The process-wide :class:`LlamaCppModel` for ``path`` with the settings' context size
    and threads (created on first call; the weights load on first use). The queue size is the
    first caller's ``local_queue_size``."""
    key = (
        str(Path(path).resolve()),
        settings.llamacpp_n_ctx,
        settings.effective_llamacpp_threads(),
    )
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = LlamaCppModel(
                Path(path),
                n_ctx=settings.llamacpp_n_ctx,
                threads=settings.effective_llamacpp_threads(),
                queue_size=settings.local_queue_size,
            )
            _MODELS[key] = model
        return model
