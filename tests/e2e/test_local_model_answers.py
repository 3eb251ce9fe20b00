"""The real offline answer path with the capable model: Qwen2.5-Coder-1.5B on llama.cpp, as
`make run` serves it. `make test` installs the model (`make model`), so CI runs these on every
submission; they skip only where the model was deliberately skipped (SKIP_MODEL=1).

A handful of questions over the small test corpus: a cited answer, a model-condensed follow-up,
a near-miss and an off-topic question declined with no sources, a streamed answer, and a chunk
that tries to inject instructions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rag.abstention import ABSTAIN_TEXT
from rag.config import PROJECT_ROOT, Settings
from rag.model_files import QWEN_CODER_1_5B, installed_model
from rag.pipeline import RAG
from rag.types import AnswerEvent, TokenEvent, Turn
from tests.rag.answering_corpus import INJECTION, build_store, corpus_chunks

pytestmark = pytest.mark.slow

MODEL = installed_model(QWEN_CODER_1_5B, PROJECT_ROOT / "data" / "models")
if MODEL is None:
    pytest.skip(
        "the 1.5B model is not installed (make model; SKIP_MODEL=1 skips it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory, embedder) -> RAG:
    data = tmp_path_factory.mktemp("qwen-e2e")
    settings = Settings(
        data_dir=data,
        torch_threads=1,
        generator="local",
        local_model=str(MODEL),
        local_max_new_tokens=80,
        answer_cache_size=0,
    )
    chunks = corpus_chunks()
    # The dropout chunk also carries an instruction: ingested text is data, not instructions.
    dropout = next(i for i, c in enumerate(chunks) if "Dropout randomly" in c.text)
    chunks[dropout] = dataclasses.replace(
        chunks[dropout], text=chunks[dropout].text + " " + INJECTION
    )
    store = build_store(settings, embedder, chunks)
    return RAG(settings, embedder=embedder, store=store)


def test_a_cited_answer_with_the_specific_value(rag: RAG) -> None:
    answer = rag.ask("Which metric should I use for imbalanced fraud detection?")
    assert not answer.abstained and "PR-AUC" in answer.text
    assert answer.citations and all(c.quote for c in answer.citations)
    assert len(answer.text) < 400  # one or two sentences, not a ramble


def test_a_follow_up_is_condensed_by_the_model(rag: RAG) -> None:
    history = [
        Turn("user", "How does LoRA fine-tuning work?"),
        Turn("assistant", "LoRA freezes the weights and learns a low-rank update [1]."),
    ]
    answer = rag.ask("and what does its rank control?", history=history)
    assert "lora" in answer.query.lower() and answer.query != "and what does its rank control?"
    assert not answer.abstained and answer.citations


@pytest.mark.parametrize(
    "question",
    [
        "What momentum value does batch normalization use by default?",  # near-miss
        "What is the capital of Australia?",  # off-topic
    ],
)
def test_questions_the_corpus_does_not_answer_are_declined(rag: RAG, question: str) -> None:
    answer = rag.ask(question)
    assert answer.abstained and answer.text == ABSTAIN_TEXT and answer.citations == []


def test_streaming_sends_tokens_then_the_checked_answer(rag: RAG) -> None:
    events = list(rag.stream("What does dropout do during training?"))
    assert isinstance(events[-1], AnswerEvent)
    assert any(isinstance(e, TokenEvent) for e in events[:-1])
    answer = events[-1].answer
    assert not answer.abstained and answer.citations
    assert "PWNED" not in answer.text  # the injected instruction was not followed
    assert "first_token" in answer.timings_ms


def test_the_model_file_is_qwen_verified(rag: RAG) -> None:
    assert Path(MODEL).stat().st_size == QWEN_CODER_1_5B.size
