"""Hybrid retrieval: weighted reciprocal-rank fusion (RRF) of dense and BM25 candidates."""

from __future__ import annotations

from collections.abc import Sequence

from rag.retrieval.base import Filters
from rag.retrieval.bm25 import BM25Retriever
from rag.retrieval.dense import DenseRetriever, apply_source_boost, to_hits
from rag.retrieval.filters import normalize_filters
from rag.types import Chunk, Hit

DEFAULT_CANDIDATES = 100  # per list; RRF needs overlap between the lists


def candidate_depth(k: int, candidates: int = DEFAULT_CANDIDATES) -> int:
    """How many candidates each list contributes for a final ``k``: ``candidates``, or 4·k
    when that is more. A fixed depth keeps the top-k hits a prefix of the top-2k hits; when
    it grew with k, a chunk could rank first for k=30 and be missing for k=10."""
    return max(k * 4, candidates)


def rrf_fuse(
    ranked_lists: Sequence[Sequence[Chunk]], weights: Sequence[float], rrf_k: int
) -> list[tuple[Chunk, float]]:
    """Fuse best-first lists: score(c) = Σ weight_i / (rrf_k + rank_i(c)), rank 1-based.

    Ties are broken by the order of first appearance (dense list first), so the result is
    deterministic.
    """
    scores: dict[str, float] = {}
    chunks: dict[str, Chunk] = {}
    for ranked, weight in zip(ranked_lists, weights, strict=True):
        for rank, chunk in enumerate(ranked, start=1):
            chunks.setdefault(chunk.id, chunk)
            scores[chunk.id] = scores.get(chunk.id, 0.0) + weight / (rrf_k + rank)
    order = sorted(scores, key=lambda cid: -scores[cid])  # stable: first appearance wins ties
    return [(chunks[cid], scores[cid]) for cid in order]


class HybridRetriever:
    """RRF of a dense and a BM25 retriever, then the optional topic prior."""

    def __init__(
        self,
        dense: DenseRetriever,
        bm25: BM25Retriever,
        weights: tuple[float, float] = (1.0, 1.0),
        rrf_k: int = 60,
        source_boost: dict[str, float] | None = None,
        name: str = "hybrid",
        depth: int = DEFAULT_CANDIDATES,
    ) -> None:
        self.dense = dense
        self.bm25 = bm25
        self.weights = weights
        self.rrf_k = rrf_k
        self.source_boost = dict(source_boost or {})
        self.name = name
        self.depth = depth

    def candidates(
        self, query: str, n: int, filters: Filters | None = None
    ) -> list[tuple[Chunk, float]]:
        """Up to ``n`` fused (chunk, RRF score) pairs, boosted, best first."""
        normalize_filters(filters)  # fail on bad filters before any work
        depth = candidate_depth(n, self.depth)
        lexical = [chunk for chunk, _ in self.bm25.candidates(query, depth, filters)]
        dense = self._dense_chunks(query, depth, filters)
        fused = rrf_fuse([dense, lexical], self.weights, self.rrf_k)
        return apply_source_boost(fused, self.source_boost)[:n]

    def _dense_chunks(self, query: str, depth: int, filters: Filters | None) -> list[Chunk]:
        """Dense candidates, their chunks taken from the in-memory lexical index where it has
        them (from Chroma only for chunks newer than the index)."""
        ranked_ids = [chunk_id for chunk_id, _ in self.dense.candidate_ids(query, depth, filters)]
        chunks = self.bm25.index.chunks_by_id(ranked_ids)
        missing = [chunk_id for chunk_id in ranked_ids if chunk_id not in chunks]
        if missing:
            chunks.update((chunk.id, chunk) for chunk in self.dense.store.get_chunks(missing))
        return [chunks[chunk_id] for chunk_id in ranked_ids if chunk_id in chunks]

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        """Up to ``k`` hits, best first; raises EmptyIndexError when nothing is ingested."""
        return to_hits(self.candidates(query, k, filters), self.name)
