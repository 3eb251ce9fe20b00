"""Shared pieces of the fine-tuning tests: a tiny random Mistral, a small chunk corpus with a
word-overlap "retriever", and Q&A / gold files written in the gold-set format."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from finetune.dataset import EvidenceIndex
from rag.config import Settings
from rag.types import Chunk, Hit
from tests.rag.tiny_models import save_tiny_mistral

TEXTS = [
    "The rank r controls the size of the low rank matrices. A larger r means more parameters.",
    "LoRA trains two low rank matrices per layer and the model weights are not trained.",
    "An adapter is a small number of parameters that can be trained for one model.",
    "Machine learning is learning from data, not from rules.",
    "To train a model, use data and a learning rate; the answer depends on the data.",
    "The context is data; the question is what you answer.",
    "One adapter per source can be used with the same model.",
    "Matrix A and matrix B are the two low rank matrices of LoRA.",
]

ITEMS: list[dict[str, Any]] = [
    {
        "id": "t-1",
        "question": "What does the rank r control?",
        "answer": "It controls the size of the low rank matrices. A larger r means more parameters.",
        "evidence": ["The rank r controls the size of the low rank matrices."],
        "answerable": True,
        "kind": "keyword",
    },
    {
        "id": "t-2",
        "question": "What does LoRA train?",
        "answer": "Two low rank matrices per layer.",
        "evidence": ["LoRA trains two low rank matrices per layer"],
        "answerable": True,
        "kind": "keyword",
    },
    {
        "id": "t-3",
        "question": "What is an adapter?",
        "answer": "A small number of parameters trained for one model.",
        "evidence": ["An adapter is a small number of parameters"],
        "answerable": True,
        "kind": "keyword",
    },
    {
        "id": "t-4",
        "question": "What is machine learning?",
        "answer": "Learning from data, not from rules.",
        "evidence": ["Machine learning is learning from data, not from rules."],
        "answerable": True,
        "kind": "keyword",
    },
    {
        "id": "t-5",
        "question": "What are matrix A and matrix B?",
        "answer": "The two low rank matrices of LoRA.",
        "evidence": ["Matrix A and matrix B are the two low rank matrices of LoRA."],
        "answerable": True,
        "kind": "keyword",
    },
    {
        "id": "t-6",
        "question": "Who won the world cup?",
        "answer": "The corpus does not cover this.",
        "evidence": [],
        "answerable": False,
        "kind": "unanswerable",
    },
    {
        "id": "t-7",
        "question": "How can one model use two adapters?",
        "answer": "One adapter per source can be used with the same model.",
        "evidence": ["One adapter per source can be used with the same model."],
        "answerable": True,
        "kind": "paraphrase",
    },
    {
        "id": "t-8",
        "question": "What do I need to train a model?",
        "answer": "Data and a learning rate.",
        "evidence": ["To train a model, use data and a learning rate"],
        "answerable": True,
        "kind": "paraphrase",
    },
]

GOLD: list[dict[str, Any]] = [
    {
        "id": "g-1",
        "question": "Which matrices does LoRA add to a layer?",
        "answer": "Two low rank matrices.",
        "evidence": ["two low rank matrices per layer and the model weights are not trained"],
        "answerable": True,
        "kind": "keyword",
        "split": "test",
    },
    {
        "id": "g-2",
        "question": "what is the capital of australia?",
        "answer": "The corpus does not cover this.",
        "evidence": [],
        "answerable": False,
        "kind": "unanswerable",
        "split": "test",
    },
]


def make_chunks() -> list[Chunk]:
    """The tiny corpus as chunks of two documents."""
    return [
        Chunk(
            id=f"doc{i % 2}#{i}",
            doc_id=f"doc{i % 2}",
            text=text,
            section="Notes",
            position=i,
            metadata={"title": f"Doc {i % 2}", "source": f"doc{i % 2}.md", "url": ""},
        )
        for i, text in enumerate(TEXTS)
    ]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def word_overlap_search(chunks: list[Chunk]) -> Callable[[str, int], list[Hit]]:
    """A deterministic stand-in for the hybrid retriever: chunks ranked by shared words."""

    def search(question: str, n: int) -> list[Hit]:
        q = _words(question)
        ranked = sorted(chunks, key=lambda c: (-len(q & _words(c.text)), c.id))[:n]
        return [
            Hit(chunk=c, score=float(len(q & _words(c.text))), rank=i, retriever="hybrid")
            for i, c in enumerate(ranked, 1)
        ]

    return search


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSON lines, filling the gold-set keys a row leaves out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            full = {"source": "", "topic": "", "split": "train", **row}
            handle.write(json.dumps(full) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Mistral with a chat-template tokenizer, saved once per session."""
    return save_tiny_mistral(tmp_path_factory.mktemp("ft-base") / "base")


@pytest.fixture
def chunks() -> list[Chunk]:
    return make_chunks()


@pytest.fixture
def search(chunks: list[Chunk]) -> Callable[[str, int], list[Hit]]:
    return word_overlap_search(chunks)


@pytest.fixture
def evidence_index(chunks: list[Chunk]) -> EvidenceIndex:
    return EvidenceIndex(chunks)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A clean training file and a gold file that does not overlap it."""
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", ITEMS),
        "gold": write_jsonl(tmp_path / "gold.jsonl", GOLD),
    }


@pytest.fixture
def tiny_settings(tmp_path: Path, tiny_base: Path) -> Settings:
    """Settings whose local model is the tiny Mistral (fp32), one torch thread."""
    return Settings(
        data_dir=tmp_path / "data",
        torch_threads=1,
        local_model=str(tiny_base),
        local_4bit=False,
        local_max_new_tokens=8,
    )
