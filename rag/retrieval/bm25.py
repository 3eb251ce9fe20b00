"""Lexical retrieval: BM25 over the chunks' indexed text (see :mod:`rag.lexical`)."""

from __future__ import annotations

from rag.lexical import LexicalIndex
from rag.retrieval.base import Filters
from rag.retrieval.dense import to_hits
from rag.types import Chunk, Hit


class BM25Retriever:
    """Chunks ranked by BM25 score (higher is better); only chunks sharing a term match."""

    def __init__(self, index: LexicalIndex, name: str = "bm25") -> None:
        self.index = index
        self.name = name

    def candidates(
        self, query: str, n: int, filters: Filters | None = None
    ) -> list[tuple[Chunk, float]]:
        """Up to ``n`` (chunk, BM25 score) pairs, best first, from an up-to-date index."""
        self.index.ensure_fresh()
        return self.index.search(query, n, filters)

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        """Up to ``k`` hits, best first; raises EmptyIndexError when nothing is indexed."""
        return to_hits(self.candidates(query, k, filters), self.name)
