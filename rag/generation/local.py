"""The ``local`` generator: a causal LM on this machine, with an optional LoRA adapter per
request, on one of two runtimes (``settings.local_runtime``):

* llama.cpp (:mod:`rag.llamacpp`) for GGUF models — the default for ``local_model=auto``
  (Qwen2.5-Coder-1.5B when installed, else SmolLM2's packaged GGUF). Greedy, ``max_tokens``
  limited, GGUF LoRA adapters per request.
* transformers for Hugging Face models (4-bit nf4 by default, PEFT adapters), described below.

Decoding is greedy with a mild repetition penalty (small models otherwise loop) and stops on
the end-of-turn token. Streaming runs ``generate`` in a worker thread feeding a
``TextIteratorStreamer``; closing the stream early cancels the generation and frees the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rag.errors import GenerationError, ModelUnavailableError
from rag.generation.base import model_answer, no_context_answer
from rag.local_models import LocalModelManager, local_gguf_file, uses_llamacpp
from rag.prompt import build_prompt
from rag.types import Answer, AnswerEvent, Hit, StreamEvent, TokenEvent, Turn

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.llamacpp import LlamaCppModel

log = logging.getLogger(__name__)

# Tokens that end an assistant turn in common chat templates (ChatML, Llama 3, Mistral, Phi,
# Gemma); those present in the vocabulary stop generation besides the model's own eos.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "</s>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
)


class CancelledCriteria:
    """A ``StoppingCriteria`` that stops generation once ``event`` is set (consumer gone)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        """True for every sequence of the batch once cancelled."""
        import torch

        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


def chat_messages(
    question: str, hits: list[Hit], history: list[Turn] | None = None
) -> list[dict[str, str]]:
    """The messages a local model sees: the system prompt first, then rag.prompt's messages.

    The system prompt comes first and is byte-identical in every request, so llama.cpp reuses
    its KV cache (the common prompt prefix) instead of prefilling it again each time.
    """
    return build_prompt(question, hits, history).chat_messages()


def end_of_turn_ids(tokenizer: Any, model: Any) -> list[int]:
    """Token ids that end the answer: the tokenizer's and model's eos plus known end-of-turn
    tokens present in the vocabulary."""
    ids: list[int] = []
    vocab = tokenizer.get_vocab()
    candidates: list[Any] = [
        tokenizer.eos_token_id,
        getattr(model.generation_config, "eos_token_id", None),
    ]
    candidates += [vocab.get(token) for token in END_OF_TURN_TOKENS]
    for candidate in candidates:
        for token_id in candidate if isinstance(candidate, list) else [candidate]:
            if token_id is not None and int(token_id) not in ids:
                ids.append(int(token_id))
    return ids


class LocalGenerator:
    """Answers with a local causal LM; implements :class:`rag.generation.base.Generator`."""

    name = "local"

    def __init__(self, settings: Settings, manager: LocalModelManager | None = None) -> None:
        self.settings = settings
        self.manager = manager or LocalModelManager(settings)
        # Decided once: a GGUF model runs on llama.cpp unless local_runtime says transformers.
        self.runtime = "llamacpp" if uses_llamacpp(settings) else "transformers"
        self._llama: LlamaCppModel | None = None

    @property
    def llama(self) -> LlamaCppModel:
        """The process-wide llama.cpp model for the configured GGUF (llama.cpp runtime only)."""
        if self._llama is None:
            from rag.llamacpp import shared_model

            path = local_gguf_file(self.settings.local_model, self.settings)
            assert path is not None  # uses_llamacpp() said it is a GGUF
            self._llama = shared_model(path, self.settings)
        return self._llama

    def _llama_adapter(self, adapter: str | None) -> Any:
        """The GGUF file of ``adapter`` (None for the base model); a PEFT-only adapter cannot
        run on llama.cpp, and the error says how to fix that."""
        if adapter is None:
            return None
        gguf = self.manager.registry.gguf(adapter)  # UnknownNameError when absent
        if gguf is None:
            raise ModelUnavailableError(
                f"adapter {adapter!r} is a PEFT adapter (safetensors), which the llama.cpp runtime "
                "cannot serve: set local_runtime=transformers, or convert it to GGUF with "
                "llama.cpp's convert_lora_to_gguf.py into "
                f"{self.manager.registry.root / adapter / 'adapter.gguf'}"
            )
        return gguf

    @staticmethod
    def _llama_timings(timings: dict[str, Any], total_ms: float) -> dict[str, float]:
        """Answer timings from llama.cpp's accounting (prefill / decode in ms)."""
        out = {"generate": total_ms}
        if "prompt_ms" in timings:
            out["prefill"] = float(timings["prompt_ms"])
        if "predicted_ms" in timings:
            out["decode"] = float(timings["predicted_ms"])
        # Token counts (not milliseconds) for tokens/s: prefilled (new, not from the KV
        # cache), reused from the cache, and decoded.
        for key, name in (
            ("prompt_n", "prefill_tokens"),
            ("cache_n", "cached_tokens"),
            ("predicted_n", "decode_tokens"),
        ):
            if key in timings:
                out[name] = float(timings[key])
        return out

    # --- shared steps --------------------------------------------------------------------
    def encode_prompt(
        self, question: str, hits: list[Hit], history: list[Turn] | None = None
    ) -> dict[str, Any]:
        """Tokenised chat prompt (``input_ids``, ``attention_mask``) on the model's device."""
        tokenizer = self.manager.tokenizer
        encoded = tokenizer.apply_chat_template(
            chat_messages(question, hits, history),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        device = self.manager.device
        return {key: value.to(device) for key, value in encoded.items()}

    def generation_kwargs(self, model: Any) -> dict[str, Any]:
        """Decoding settings: greedy, repetition penalty, length limit, end-of-turn stops."""
        tokenizer = self.manager.tokenizer
        return {
            "do_sample": False,
            "repetition_penalty": self.settings.local_repetition_penalty,
            "max_new_tokens": self.settings.local_max_new_tokens,
            "eos_token_id": end_of_turn_ids(tokenizer, model),
            "pad_token_id": tokenizer.pad_token_id,
            # Neutralise sampling settings a model's generation_config may carry, so greedy
            # decoding does not warn about them on every request.
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }

    # --- Generator interface -------------------------------------------------------------
    def generate(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Answer:
        """A complete answer; raises CapacityError when the model's queue is full."""
        if not hits:
            return no_context_answer(self.name, question, adapter)
        if self.runtime == "llamacpp":
            return self._generate_llama(question, hits, history, adapter)
        started = time.perf_counter()
        with self.manager.acquire(adapter) as model:
            inputs = self.encode_prompt(question, hits, history)
            try:
                output = model.generate(**inputs, **self.generation_kwargs(model))
            except Exception as exc:  # noqa: BLE001 - surfaced as one typed error
                raise GenerationError(f"local generation failed: {exc}") from exc
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        text = self.manager.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        elapsed = (time.perf_counter() - started) * 1000
        log.debug("local answer: %d tokens in %.0f ms", len(new_tokens), elapsed)
        return model_answer(self.name, question, hits, text, adapter, {"generate": elapsed})

    def stream(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Token events as they are decoded, then one AnswerEvent.

        Admission happens on the first ``next()``: CapacityError / UnknownNameError are
        raised there, before any token. Closing the iterator early stops the generation.
        """
        if not hits:
            answer = no_context_answer(self.name, question, adapter)
            yield TokenEvent(answer.text)
            yield AnswerEvent(answer)
            return
        if self.runtime == "llamacpp":
            yield from self._stream_llama(question, hits, history, adapter)
            return
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        started = time.perf_counter()
        timings: dict[str, float] = {}
        parts: list[str] = []
        failures: list[BaseException] = []
        with self.manager.acquire(adapter) as model:
            inputs = self.encode_prompt(question, hits, history)
            kwargs = self.generation_kwargs(model)
            cancel = threading.Event()
            streamer = TextIteratorStreamer(
                self.manager.tokenizer, skip_prompt=True, skip_special_tokens=True
            )

            def run() -> None:
                try:
                    model.generate(
                        **inputs,
                        **kwargs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([CancelledCriteria(cancel)]),
                    )
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
                    failures.append(exc)
                    streamer.end()  # unblock the consumer, which re-raises

            worker = threading.Thread(target=run, name="mlrag-local-generate", daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    if not piece:
                        continue
                    if not parts:
                        timings["first_token"] = (time.perf_counter() - started) * 1000
                    parts.append(piece)
                    yield TokenEvent(piece)
            finally:
                # Normal end: a no-op. Consumer gone (GeneratorExit): stop at the next token,
                # and keep the model until the worker has really finished with it.
                cancel.set()
                worker.join()
        if failures:
            raise GenerationError(f"local generation failed: {failures[0]}") from failures[0]
        timings["generate"] = (time.perf_counter() - started) * 1000
        yield AnswerEvent(
            model_answer(self.name, question, hits, "".join(parts).strip(), adapter, timings)
        )

    def rewrite(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        """A short completion for the pipeline's helpers (condensing follow-ups). Only on
        llama.cpp (a capable GGUF model); the transformers path has no rewrite, so the
        pipeline uses its heuristic there."""
        if self.runtime != "llamacpp":
            raise ModelUnavailableError("rewriting needs the llama.cpp runtime")
        return self.llama.complete(messages, max_tokens).text

    # --- llama.cpp runtime ---------------------------------------------------------------
    def _generate_llama(
        self, question: str, hits: list[Hit], history: list[Turn] | None, adapter: str | None
    ) -> Answer:
        lora = self._llama_adapter(adapter)
        started = time.perf_counter()
        result = self.llama.complete(
            chat_messages(question, hits, history), self.settings.local_max_new_tokens, lora
        )
        elapsed = (time.perf_counter() - started) * 1000
        timings = self._llama_timings(result.timings, elapsed)
        return model_answer(self.name, question, hits, result.text.strip(), adapter, timings)

    def _stream_llama(
        self, question: str, hits: list[Hit], history: list[Turn] | None, adapter: str | None
    ) -> Iterator[StreamEvent]:
        lora = self._llama_adapter(adapter)
        started = time.perf_counter()
        stream = self.llama.stream(
            chat_messages(question, hits, history), self.settings.local_max_new_tokens, lora
        )
        parts: list[str] = []
        try:
            for piece in stream:
                # The answer is stripped at the end; hold back leading whitespace so the
                # streamed text and the final answer agree.
                if not parts and not piece.strip():
                    continue
                parts.append(piece)
                yield TokenEvent(piece.lstrip() if len(parts) == 1 else piece)
        finally:
            stream.close()  # consumer gone: cancels the generation
        result = stream.result
        timings = self._llama_timings(
            result.timings if result else {}, (time.perf_counter() - started) * 1000
        )
        if result is not None and result.first_token_ms is not None:
            timings["first_token"] = result.first_token_ms
        text = result.text.strip() if result else "".join(parts).strip()
        yield AnswerEvent(model_answer(self.name, question, hits, text, adapter, timings))
