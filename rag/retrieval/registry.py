"""Retrievers by name, built over shared, loaded-once resources.

Names: ``dense``, ``bm25``, ``hybrid`` and each of them with ``+rerank`` (which needs
``MLRAG_RERANKER_MODEL``, e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``). When
``settings.mmr_lambda`` is set, every retriever's final list is re-ordered by MMR.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.errors import InvalidInputError, UnknownNameError
from rag.retrieval.base import Retriever

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.lexical import LexicalIndex
    from rag.store import ChunkStore

BASE_RETRIEVERS: tuple[str, ...] = ("dense", "bm25", "hybrid")
RERANK_SUFFIX = "+rerank"
RETRIEVER_NAMES: tuple[str, ...] = (
    "dense",
    "bm25",
    "hybrid",
    "dense+rerank",
    "bm25+rerank",
    "hybrid+rerank",
    "baseline",  # the user's page's recipe (eval yardstick), see rag.retrieval.baseline
)


@dataclass
class RetrievalContext:
    """Resources shared by every retriever: loaded once, the heavy ones on first use."""

    settings: Settings
    embedder: Embedder
    store: ChunkStore
    lexical: LexicalIndex | None = None  # built lazily on first bm25/hybrid use
    reranker: Any | None = None  # CrossEncoder, loaded lazily from settings.reranker_model
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def lexical_index(self) -> LexicalIndex:
        """The BM25 index of the store, loaded or built on first call."""
        if self.lexical is None:
            with self._lock:
                if self.lexical is None:
                    from rag.lexical import LexicalIndex, lexical_index_dir

                    self.lexical = LexicalIndex.load_or_build(
                        self.store, lexical_index_dir(self.settings)
                    )
        return self.lexical

    def cross_encoder(self) -> Any:
        """The reranker model, loaded on first call (ModelUnavailableError if none is set)."""
        if self.reranker is None:
            with self._lock:
                if self.reranker is None:
                    from rag.retrieval.rerank import load_cross_encoder

                    self.reranker = load_cross_encoder(self.settings)
        return self.reranker


def check_retriever_name(name: str) -> str:
    """``name`` if it is a known retriever, else UnknownNameError listing the valid names."""
    if name not in RETRIEVER_NAMES:
        raise UnknownNameError(
            f"unknown retriever {name!r}; choose one of: {', '.join(RETRIEVER_NAMES)}"
        )
    return name


def _build_base(name: str, ctx: RetrievalContext) -> Retriever:
    from rag.retrieval.dense import DenseRetriever

    settings = ctx.settings
    if name == "baseline":
        from rag.retrieval.baseline import baseline_retriever

        return baseline_retriever(ctx)
    if name == "dense":
        return DenseRetriever(ctx.embedder, ctx.store, settings.source_boost)
    from rag.retrieval.bm25 import BM25Retriever

    if name == "bm25":
        return BM25Retriever(ctx.lexical_index())
    from rag.retrieval.hybrid import HybridRetriever

    return HybridRetriever(
        DenseRetriever(ctx.embedder, ctx.store),
        BM25Retriever(ctx.lexical_index()),
        weights=settings.hybrid_weights,
        rrf_k=settings.rrf_k,
        source_boost=settings.source_boost,
        depth=settings.hybrid_candidates,
    )


def build_retriever(name: str, ctx: RetrievalContext) -> Retriever:
    """The retriever called ``name`` over ``ctx``'s resources.

    Raises UnknownNameError for names outside :data:`RETRIEVER_NAMES`, and
    ModelUnavailableError for ``+rerank`` names when no reranker model is configured.
    """
    check_retriever_name(name)
    base_name, rerank = (name.removesuffix(RERANK_SUFFIX), name.endswith(RERANK_SUFFIX))
    retriever = _build_base(base_name, ctx)
    if rerank:
        from rag.retrieval.rerank import RerankRetriever

        retriever = RerankRetriever(
            retriever, ctx.cross_encoder(), candidates=ctx.settings.rerank_candidates, name=name
        )
    if ctx.settings.mmr_lambda is not None:
        from rag.retrieval.mmr import MMRRetriever

        retriever = MMRRetriever(retriever, ctx.store, ctx.settings.mmr_lambda, name=name)
    return retriever


def validate_k(k: int | None, settings: Settings) -> int:
    """``k`` checked against ``settings.max_k`` (None means ``settings.k``)."""
    if k is None:
        return settings.k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k > settings.max_k:
        raise InvalidInputError(f"k must be an integer between 1 and {settings.max_k}, got {k!r}")
    return k
