"""A tiny corpus (a few Markdown documents ingested into a real Chroma store) and a 5-item
gold set over it, shared by the eval runner, calibration and CLI tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.types import Document

PAGE_TEXT = """# Machine Learning

## Metrics

Fraud detection has a very imbalanced positive class, so PR-AUC is the metric to watch.
ROC-AUC stays high on imbalanced data because true negatives dominate the false positive rate.

## Fine-tuning

LoRA learns a low-rank update; the rank r controls how many parameters the adapter trains.
A larger r gives the adapter more capacity and more trainable parameters.
"""

NUMPY_TEXT = """# Broadcasting

## Rules

Broadcasting lets NumPy combine arrays of different shapes in arithmetic operations.
Two dimensions are compatible when they are equal, or one of them is 1.
The smaller array is stretched along the dimensions of size one without copying data.
"""

TORCH_TEXT = """# Autograd

## Gradients

Calling backward on the loss computes gradients of every tensor with requires_grad set.
Gradients accumulate in the grad attribute, so optimizer.zero_grad clears them before each step.
"""

DOCS: list[tuple[str, str, str, str]] = [
    ("file:machine-learning.md", "corpus/machine-learning.txt", "machine-learning", PAGE_TEXT),
    (
        "url:https://numpy.org/doc/broadcasting.html",
        "https://numpy.org/doc/broadcasting.html",
        "numpy",
        NUMPY_TEXT,
    ),
    (
        "url:https://pytorch.org/autograd.html",
        "https://pytorch.org/autograd.html",
        "pytorch",
        TORCH_TEXT,
    ),
]

GOLD: list[dict[str, Any]] = [
    {"id": "page-001", "question": "Which metric should I use for fraud detection?",
     "answer": "PR-AUC, because the positive class is very imbalanced.",
     "evidence": ["Fraud detection has a very imbalanced positive class, so PR-AUC is the metric to watch."],
     "answerable": True, "source": "corpus/machine-learning.txt", "topic": "machine-learning",
     "kind": "keyword", "split": "test"},
    {"id": "page-002", "question": "What does the rank r of LoRA control?",
     "answer": "How many parameters the adapter trains: larger r, more capacity.",
     "evidence": ["the rank r controls how many parameters the adapter trains"],
     "answerable": True, "source": "corpus/machine-learning.txt", "topic": "machine-learning",
     "kind": "keyword", "split": "test"},
    {"id": "numpy-001", "question": "when can two array dimensions be broadcast together?",
     "answer": "When they are equal or one of them is 1.",
     "evidence": ["Two dimensions are compatible when they are equal, or one of them is 1."],
     "answerable": True, "source": "https://numpy.org/doc/broadcasting.html", "topic": "numpy",
     "kind": "paraphrase", "split": "test"},
    {"id": "pytorch-001", "question": "why do I need to call zero_grad before each step?",
     "answer": "Gradients accumulate in .grad, so zero_grad clears them.",
     "evidence": ["Gradients accumulate in the grad attribute, so optimizer.zero_grad clears them before each step."],
     "answerable": True, "source": "https://pytorch.org/autograd.html", "topic": "pytorch",
     "kind": "keyword", "split": "test"},
    {"id": "unans-001", "question": "What is the capital of Australia?",
     "answer": "The corpus does not cover this.", "evidence": [], "answerable": False,
     "source": "", "topic": "", "kind": "unanswerable", "split": "test"},
]  # fmt: skip


def documents() -> list[Document]:
    """The tiny corpus as loaded documents."""
    return [
        Document(id=doc_id, source=source, title=text.splitlines()[0][2:], url=source if "://" in source else "",
                 text=text, metadata={"topic": topic, "format": "md"})
        for doc_id, source, topic, text in DOCS
    ]  # fmt: skip


def write_gold(path: Path, items: list[dict[str, Any]] | None = None) -> Path:
    """Write gold items (default :data:`GOLD`) as JSONL."""
    path.write_text("".join(json.dumps(i) + "\n" for i in (items or GOLD)), encoding="utf-8")
    return path


def build_tiny_store(settings: Any, embedder: Any) -> Any:
    """Ingest :func:`documents` into ``settings``' data dir; returns the store."""
    from ingest.pipeline import ingest_documents
    from rag.store import ChunkStore

    store = ChunkStore.from_settings(settings, embedder)
    ingest_documents(settings, documents(), store=store, progress=False)
    return store
