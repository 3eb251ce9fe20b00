"""Cross-encoder re-ranking, with a tiny randomly initialised BERT cross-encoder built and
saved locally (no reranker weights ship offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import ModelUnavailableError
from rag.retrieval.registry import RetrievalContext, build_retriever
from rag.retrieval.rerank import RerankRetriever, load_cross_encoder
from rag.store import ChunkStore
from tests.rag.test_retrievers import fill_store, make_chunks


@pytest.fixture(scope="module")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer BERT sequence classifier (1 label) with MiniLM's tokenizer, saved to disk."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rag.embeddings import resolve_embedding_model

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2")
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def rerank_ctx(tmp_path_factory, embedder, tiny_cross_encoder_dir: Path) -> RetrievalContext:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("rerank") / "data",
        torch_threads=1,
        reranker_model=str(tiny_cross_encoder_dir),
        rerank_candidates=6,
    )
    store = ChunkStore.from_settings(settings, embedder)
    fill_store(store, embedder, make_chunks())
    return RetrievalContext(settings=settings, embedder=embedder, store=store)


@pytest.mark.parametrize("name", ["dense+rerank", "bm25+rerank", "hybrid+rerank"])
def test_real_cross_encoder_scores_and_orders(rerank_ctx: RetrievalContext, name: str) -> None:
    from sentence_transformers import CrossEncoder

    retriever = build_retriever(name, rerank_ctx)
    assert isinstance(rerank_ctx.reranker, CrossEncoder)
    query = "LoRA rank matrix data"
    hits = retriever.search(query, 4)
    assert len(hits) == 4
    assert [h.rank for h in hits] == [1, 2, 3, 4] and all(h.retriever == name for h in hits)
    expected = rerank_ctx.reranker.predict([(query, h.chunk.indexed_text) for h in hits])
    assert [h.score for h in hits] == pytest.approx([float(s) for s in expected], abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # The base retriever's candidates (rerank_candidates of them) are what gets re-scored.
    base = build_retriever(name.removesuffix("+rerank"), rerank_ctx).search(query, 6)
    assert {h.chunk.id for h in hits} <= {h.chunk.id for h in base}


class ReversingScorer:
    """Wraps a cross-encoder: records its calls and scores candidates in reverse order."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[list[tuple[str, str]]] = []

    def predict(self, pairs, **kwargs) -> np.ndarray:
        self.calls.append(list(pairs))
        self.inner.predict(pairs, **kwargs)  # the real model still runs on the same input
        return np.arange(len(pairs), dtype=np.float32)  # last candidate scores highest


def test_order_follows_the_cross_encoder(rerank_ctx: RetrievalContext) -> None:
    base = build_retriever("hybrid", rerank_ctx)
    query = "PR-AUC imbalanced fraud detection"
    base_hits = base.search(query, 6)
    scorer = ReversingScorer(rerank_ctx.cross_encoder())
    reranked = RerankRetriever(base, scorer, candidates=6).search(query, 3)
    assert scorer.calls == [[(query, h.chunk.indexed_text) for h in base_hits]]
    assert [h.chunk.id for h in reranked] == [h.chunk.id for h in reversed(base_hits)][:3]
    assert [h.score for h in reranked] == [5.0, 4.0, 3.0]
    assert reranked[0].retriever == "hybrid+rerank"


def test_filters_pass_through_reranking(rerank_ctx: RetrievalContext) -> None:
    hits = build_retriever("hybrid+rerank", rerank_ctx).search(
        "matrix eigenvalues LoRA", 5, {"topic": "numpy"}
    )
    assert hits and all(h.chunk.topic == "numpy" for h in hits)


def test_unloadable_reranker_is_model_unavailable(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, reranker_model=str(tmp_path / "missing-model"), torch_threads=1
    )
    with pytest.raises(ModelUnavailableError, match="MLRAG_RERANKER_MODEL"):
        load_cross_encoder(settings)
