"""Maximal marginal relevance: re-order a retriever's candidates so the final list covers
more than one near-duplicate passage.

Relevance is the base retriever's own score, min-max scaled to [0, 1] (so MMR keeps the
judgement of whichever retriever ran — dense, BM25, RRF or a cross-encoder); redundancy is
the cosine similarity of the chunks' stored embeddings, fetched from Chroma by id (a single
``get`` costs milliseconds, re-embedding the candidates would cost seconds on CPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rag.retrieval.base import Filters, Retriever
from rag.types import Hit

if TYPE_CHECKING:
    from rag.store import ChunkStore


def mmr_candidate_count(k: int) -> int:
    """How many base candidates MMR chooses ``k`` from."""
    return max(3 * k, 20)


def mmr_order(relevance: np.ndarray, embeddings: np.ndarray, k: int, lambda_: float) -> list[int]:
    """Indices of up to ``k`` items chosen greedily by
    ``lambda_ * relevance - (1 - lambda_) * max cosine similarity to the items chosen so far``.

    ``embeddings`` must be L2-normalised rows; ``lambda_ = 1`` keeps the relevance order.
    """
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    similarity = embeddings @ embeddings.T
    chosen: list[int] = []
    redundancy = np.full(n, -np.inf)  # max similarity to a chosen item (none chosen yet)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        objective = lambda_ * relevance - (1.0 - lambda_) * penalty
        objective = np.where(available, objective, -np.inf)
        best = int(np.argmax(objective))  # argmax takes the first of equals: stable
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, similarity[best])
    return chosen


def scaled_relevance(scores: list[float]) -> np.ndarray:
    """Scores min-max scaled to [0, 1] (all ones when they are all equal)."""
    values = np.asarray(scores, dtype=np.float64)
    span = values.max() - values.min() if len(values) else 0.0
    if span <= 0:
        return np.ones_like(values)
    return (values - values.min()) / span


def fetch_embeddings(store: ChunkStore, ids: list[str]) -> np.ndarray:
    """Stored unit embeddings of ``ids``, in that order."""
    page = store.collection.get(ids=ids, include=["embeddings"])
    by_id = {
        cid: np.asarray(vec, dtype=np.float32)
        for cid, vec in zip(page["ids"], page["embeddings"], strict=True)
    }
    matrix = np.stack([by_id[cid] for cid in ids])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


class MMRRetriever:
    """Wraps a retriever: takes its top candidates and returns ``k`` of them in MMR order.

    Hits keep the base retriever's scores; only order and ranks change.
    """

    def __init__(
        self, base: Retriever, store: ChunkStore, lambda_: float, name: str | None = None
    ) -> None:
        self.base = base
        self.store = store
        self.lambda_ = lambda_
        self.name = name or base.name

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        """Up to ``k`` diverse hits, best first."""
        hits = self.base.search(query, mmr_candidate_count(k), filters)
        if len(hits) <= 1:
            return hits[:k]
        embeddings = fetch_embeddings(self.store, [h.chunk.id for h in hits])
        order = mmr_order(scaled_relevance([h.score for h in hits]), embeddings, k, self.lambda_)
        return [
            Hit(chunk=hits[i].chunk, score=hits[i].score, rank=rank, retriever=self.name)
            for rank, i in enumerate(order, start=1)
        ]
