"""The API answers with a named adapter trained by ``finetune``: a tiny adapter is trained
(with the real hybrid retrieval over a tiny index) for the tiny Mistral, registered under a
name, and ``POST /v1/ask`` with ``adapter: NAME`` answers through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from finetune.dataset import EvidenceIndex
from finetune.registry import adapter_summaries
from finetune.train import TrainConfig, train_adapter
from rag.config import Settings
from rag.pipeline import RAG
from tests.api.conftest import fill_tiny_store, tiny_chunks
from tests.finetune.conftest import GOLD, write_jsonl

# Every item has the same target so a few epochs teach the tiny random model to say it; the
# words are in the tiny tokenizer's vocabulary.
TARGET = "It is the training data."
QUESTIONS = {
    "What is overfitting?": "Overfitting happens when a model learns the noise in the training data",
    "What does dropout do?": "randomly sets a fraction of the activations to zero during training",
    "What is gradient descent?": "Gradient descent is an iterative optimization algorithm",
    "What is a random forest?": "A random forest is an ensemble of decision trees",
    "What is PCA?": "linear dimensionality reduction method",
    "What does attention do?": "lets a transformer weigh every token of the input",
}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any, tiny_base: Path
) -> tuple[Settings, RAG]:
    root = tmp_path_factory.mktemp("serving")
    settings = Settings(
        data_dir=root / "data",
        torch_threads=1,
        local_model=str(tiny_base),
        local_4bit=False,
        local_max_new_tokens=12,
        generator="local",
        retriever="hybrid",
    )
    fill_tiny_store(settings, embedder)
    rag = RAG(settings, embedder=embedder)
    rows = [
        {
            "id": f"s-{i}",
            "question": q,
            "answer": TARGET,
            "evidence": [quote],
            "answerable": True,
            "kind": "keyword",
        }
        for i, (q, quote) in enumerate(QUESTIONS.items())
    ]
    data = write_jsonl(root / "train.jsonl", rows)
    gold = write_jsonl(root / "gold.jsonl", GOLD)
    config = TrainConfig(
        name="grounded-v1", base=str(tiny_base), r=8, alpha=16, dropout=0.0, epochs=30, lr=2e-2,
        batch=3, max_len=1024, k=5, dev_fraction=0.0, removal_fraction=0.0, warmup_ratio=0.0,
        target_modules=("all-linear",),
    )  # fmt: skip
    train_adapter(
        data, config, settings, gold=gold,
        search=lambda q, n: rag.search(q, k=n, retriever="hybrid"),
        evidence_index=EvidenceIndex(tiny_chunks()), progress=False,
    )  # fmt: skip
    return settings, rag


def test_api_answers_with_a_named_adapter(served: tuple[Settings, RAG]) -> None:
    from api.app import create_app

    settings, rag = served
    with TestClient(create_app(settings, rag=rag)) as client:
        config = client.get("/v1/config").json()
        assert "grounded-v1" in config["adapters"]

        tuned = client.post(
            "/v1/ask",
            json={
                "question": "What does dropout do?",
                "generator": "local",
                "adapter": "grounded-v1",
            },
        )
        assert tuned.status_code == 200, tuned.text
        body = tuned.json()
        assert body["generator"] == "local" and body["adapter"] == "grounded-v1"
        assert body["abstained"] is False
        # The adapter's learnt answer, with its [1] marker turned into a citation (rag.verify
        # may move it to the block that supports the sentence best).
        assert body["text"].lower().startswith("it is the training data")
        assert len(body["citations"]) == 1 and body["citations"][0]["quote"]

        base = client.post(
            "/v1/ask", json={"question": "What does dropout do?", "generator": "local"}
        )
        assert base.status_code == 200, base.text
        assert base.json()["adapter"] is None
        assert not base.json()["text"].lower().startswith("it is the training data")

        unknown = client.post(
            "/v1/ask",
            json={"question": "What does dropout do?", "generator": "local", "adapter": "nope"},
        )
        assert unknown.status_code == 400
        assert "grounded-v1" in unknown.json()["error"]["message"]


def test_registry_lists_the_trained_adapter(served: tuple[Settings, RAG]) -> None:
    settings, _ = served
    [row] = adapter_summaries(settings)
    assert row["name"] == "grounded-v1" and row["r"] == 8 and row["base"] == settings.local_model
    assert len(row["data_hash"]) == 12 and row["train_loss"] > 0 and row["dev_loss"] is None
