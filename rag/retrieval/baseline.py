"""The ``baseline`` retriever: the user's page's own RAG recipe, kept as a yardstick.

The recipe: ``RecursiveCharacterTextSplitter(chunk_size=512, chunk_overlap=64)`` on the
loaded documents' characters, all-MiniLM-L6-v2 embeddings of the bare chunk text (no
header), a Chroma similarity search with k = 4. Its chunks live in their own collection,
``<collection>_baseline``, built by :func:`ingest.baseline.build_baseline`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.errors import EmptyIndexError
from rag.retrieval.base import Filters
from rag.retrieval.dense import to_hits
from rag.retrieval.filters import normalize_filters, to_chroma_where
from rag.types import Hit

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.retrieval.registry import RetrievalContext
    from rag.store import ChunkStore

BASELINE_MAX_K = 4  # the recipe's similarity_search(question, k=4)
BASELINE_SUFFIX = "_baseline"


def baseline_collection_name(settings: Settings) -> str:
    """The Chroma collection holding the baseline's chunks."""
    return f"{settings.collection}{BASELINE_SUFFIX}"


class BaselineRetriever:
    """Cosine nearest neighbours in the baseline collection, at most 4 hits."""

    name = "baseline"

    def __init__(self, embedder: Embedder, store: ChunkStore, max_k: int = BASELINE_MAX_K) -> None:
        self.embedder = embedder
        self.store = store
        self.max_k = max_k

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        """Up to ``min(k, 4)`` hits, best first; EmptyIndexError when the baseline collection
        has not been built."""
        where = to_chroma_where(normalize_filters(filters))
        found = self.store.query(self.embedder.embed_query(query), min(k, self.max_k), where=where)
        if not found and self.store.count() == 0:
            raise EmptyIndexError(
                f"the baseline collection {self.store.collection_name!r} is empty: "
                "`mlrag eval run` builds it (ingest.baseline.build_baseline)"
            )
        return to_hits(found, self.name)


def baseline_retriever(ctx: RetrievalContext) -> BaselineRetriever:
    """The baseline retriever over ``ctx``'s Chroma client and embedder."""
    from rag.store import ChunkStore

    store = ChunkStore(
        ctx.store.client,
        baseline_collection_name(ctx.settings),
        ctx.embedder,
        ef_search=ctx.settings.hnsw_ef_search,
    )
    return BaselineRetriever(ctx.embedder, store)
