"""Dense retrieval: cosine similarity between the query embedding and the chunk embeddings
stored in Chroma."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.errors import EmptyIndexError
from rag.retrieval.base import Filters
from rag.retrieval.filters import normalize_filters, to_chroma_where
from rag.types import Chunk, Hit

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.store import ChunkStore

# How many extra candidates to fetch when a source prior may re-order them.
BOOST_DEPTH = 50


def apply_source_boost(
    scored: list[tuple[Chunk, float]], source_boost: dict[str, float]
) -> list[tuple[Chunk, float]]:
    """Multiply each score by its chunk's topic boost (default 1.0) and re-sort, best first.

    The boost is a prior for the user's own page, whose few chunks otherwise drown among the
    linked pages; the stable sort keeps the original order among equal scores.
    """
    if not source_boost:
        return scored
    boosted = [(chunk, score * source_boost.get(chunk.topic, 1.0)) for chunk, score in scored]
    return sorted(boosted, key=lambda pair: -pair[1])


def to_hits(scored: list[tuple[Chunk, float]], retriever: str) -> list[Hit]:
    """Hits with 1-based ranks in the order given."""
    return [
        Hit(chunk=chunk, score=float(score), rank=i, retriever=retriever)
        for i, (chunk, score) in enumerate(scored, start=1)
    ]


class DenseRetriever:
    """Nearest chunks by cosine similarity (score = similarity, higher is better)."""

    def __init__(
        self,
        embedder: Embedder,
        store: ChunkStore,
        source_boost: dict[str, float] | None = None,
        name: str = "dense",
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.source_boost = dict(source_boost or {})
        self.name = name

    def candidates(
        self, query: str, n: int, filters: Filters | None = None
    ) -> list[tuple[Chunk, float]]:
        """Up to ``n`` (chunk, cosine similarity) pairs, best first, without any boost."""
        where = to_chroma_where(normalize_filters(filters))
        vector = self.embedder.embed_query(query)
        found = self.store.query(vector, n, where=where)
        self._check_not_empty(found)
        return found

    def candidate_ids(
        self, query: str, n: int, filters: Filters | None = None
    ) -> list[tuple[str, float]]:
        """Like :meth:`candidates` but only (chunk id, similarity): Chroma then skips reading
        texts and metadata, which costs more than the vector search itself for deep lists."""
        if n <= 0:
            return []
        where = to_chroma_where(normalize_filters(filters))
        vector = self.embedder.embed_query(query)
        result = self.store.collection.query(
            query_embeddings=[vector.tolist()], n_results=n, where=where, include=["distances"]
        )
        found = [
            (chunk_id, 1.0 - float(distance))
            for chunk_id, distance in zip(result["ids"][0], result["distances"][0], strict=True)
        ]
        self._check_not_empty(found)
        return found

    def _check_not_empty(self, found: list) -> None:
        # Counting only when nothing came back keeps the check off the hot path.
        if not found and self.store.count() == 0:
            raise EmptyIndexError("the index is empty: run `mlrag ingest` first")

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        """Up to ``k`` hits, best first; raises EmptyIndexError when nothing is ingested."""
        depth = max(k, BOOST_DEPTH) if self.source_boost else k
        scored = apply_source_boost(self.candidates(query, depth, filters), self.source_boost)
        return to_hits(scored[:k], self.name)
