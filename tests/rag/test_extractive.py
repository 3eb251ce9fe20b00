"""The extractive generator: verbatim, cited, diverse sentences; streaming; speed."""

from __future__ import annotations

import dataclasses
import statistics
import time

import pytest

from rag.citations import split_answer
from rag.config import Settings
from rag.generation.extractive import ExtractiveGenerator, asks_for_code
from rag.prompt import ABSTAIN_TEXT
from rag.types import AnswerEvent, TokenEvent
from tests.rag.answering_corpus import INJECTION, corpus_chunks, hits_for


@pytest.fixture
def generator(embedder) -> ExtractiveGenerator:
    return ExtractiveGenerator(Settings(torch_threads=1), embedder)


def _assert_verbatim_and_cited(text: str, hits) -> None:
    sentences = split_answer(text)
    assert sentences
    for sentence in sentences:
        assert len(sentence.numbers) == 1, sentence
        n = sentence.numbers[0]
        assert 1 <= n <= len(hits)
        assert sentence.plain in hits[n - 1].chunk.text, sentence


def test_answer_is_verbatim_context_sentences_with_valid_markers(generator) -> None:
    hits = hits_for(
        "Optimization", "Evaluation Metrics", "Parameter-Efficient Fine-Tuning", "Regularization"
    )
    answer = generator.generate("Which metric is better for imbalanced fraud detection?", hits)
    assert not answer.abstained and answer.generator == "extractive" and answer.retriever == "dense"
    _assert_verbatim_and_cited(answer.text, hits)
    assert 1 <= len(split_answer(answer.text)) <= 3
    # The most relevant sentence comes first and it is from the metrics block.
    assert split_answer(answer.text)[0].numbers == [2]
    assert "PR-AUC" in answer.text


def test_no_code_lines_or_headings_unless_the_question_asks_for_code(generator) -> None:
    hits = hits_for("PyTorch Basics")
    answer = generator.generate("What happens in each step of training with PyTorch?", hits)
    assert "optimizer.step()" not in answer.text and "```" not in answer.text
    _assert_verbatim_and_cited(answer.text, hits)


def test_code_questions_are_detected() -> None:
    assert asks_for_code("Show me the code for a PyTorch training loop")
    assert asks_for_code("What does optimizer.zero_grad() do?")
    assert not asks_for_code("Why is PR-AUC better for fraud detection?")


def test_duplicate_sentences_from_overlapping_chunks_appear_once(generator) -> None:
    [hit] = hits_for("Regularization")
    twin = dataclasses.replace(hit, chunk=dataclasses.replace(hit.chunk, id="other#1"), rank=2)
    answer = generator.generate("How does dropout reduce overfitting?", [hit, twin])
    plains = [s.plain for s in split_answer(answer.text)]
    assert len(plains) == len(set(plains))


def test_injected_instruction_is_not_obeyed(generator) -> None:
    hits = hits_for("Normalization Layers", "Regularization")
    answer = generator.generate("What does batch normalization do during training?", hits)
    assert answer.text.strip() != "PWNED"
    assert INJECTION not in answer.text
    _assert_verbatim_and_cited(answer.text, hits)
    assert "Batch normalization normalizes each feature" in answer.text


def test_no_hits_means_abstention(generator) -> None:
    answer = generator.generate("What is dropout?", [])
    assert answer.abstained and answer.text == ABSTAIN_TEXT and answer.citations == []


def test_stream_yields_sentences_then_exactly_one_answer(generator) -> None:
    hits = hits_for("Parameter-Efficient Fine-Tuning", "Regularization")
    events = list(generator.stream("What does the LoRA rank r control?", hits))
    assert all(isinstance(e, TokenEvent) for e in events[:-1]) and len(events) >= 2
    assert isinstance(events[-1], AnswerEvent)
    assert "".join(e.text for e in events[:-1]) == events[-1].answer.text
    assert (
        events[-1].answer.text
        == generator.generate("What does the LoRA rank r control?", hits).text
    )


def test_follow_up_questions_use_the_history(generator) -> None:
    from rag.types import Turn

    hits = hits_for("Regularization", "Parameter-Efficient Fine-Tuning")
    history = [
        Turn("user", "How does LoRA fine-tuning work?"),
        Turn("assistant", "It learns a low-rank update [1]."),
    ]
    question = "what is it used for?"
    # Alone the question matches the dropout block; with the history it is about LoRA.
    assert split_answer(generator.generate(question, hits).text)[0].numbers == [1]
    assert split_answer(generator.generate(question, hits, history).text)[0].numbers == [2]


def test_p50_latency_for_five_hits_is_well_under_100_ms(generator) -> None:
    chunks = corpus_chunks()[:5]
    hits = [hit for c in chunks for hit in hits_for(c.title)]
    question = "How do I evaluate a fraud classifier?"
    generator.generate(question, hits)  # first call embeds the sentences (cached per chunk)
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        generator.generate(question, hits)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.1
