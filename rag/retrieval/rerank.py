"""Cross-encoder re-ranking of another retriever's top candidates.

No reranker ships offline here; users with internet set
``MLRAG_RERANKER_MODEL=cross-encoder/ms-marco-MiniLM-L6-v2`` (or a local path to any
``sentence_transformers.CrossEncoder`` folder) to enable the ``*+rerank`` retrievers.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rag.errors import ModelUnavailableError
from rag.retrieval.base import Filters, Retriever
from rag.types import Hit

if TYPE_CHECKING:
    from rag.config import Settings

RERANKER_HINT = (
    "set MLRAG_RERANKER_MODEL to a sentence-transformers CrossEncoder, "
    "e.g. MLRAG_RERANKER_MODEL=cross-encoder/ms-marco-MiniLM-L6-v2 (needs internet once) "
    "or a local model folder"
)


def load_cross_encoder(settings: Settings) -> Any:
    """Load ``settings.reranker_model`` as a ``sentence_transformers.CrossEncoder`` on CPU.

    Raises :class:`ModelUnavailableError` when no model is configured or it cannot be loaded.
    """
    if not settings.reranker_model:
        raise ModelUnavailableError(f"no reranker configured: {RERANKER_HINT}")
    from sentence_transformers import CrossEncoder

    from rag.embeddings import configure_torch_threads

    configure_torch_threads(settings.effective_threads())
    try:
        return CrossEncoder(settings.reranker_model, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure means the same to users
        raise ModelUnavailableError(
            f"cannot load reranker {settings.reranker_model!r}: {exc}; {RERANKER_HINT}"
        ) from exc


class RerankRetriever:
    """Re-scores the base retriever's top ``candidates`` with a cross-encoder over
    (query, chunk indexed text); score = the cross-encoder's output (higher is better)."""

    def __init__(
        self, base: Retriever, cross_encoder: Any, candidates: int = 30, name: str | None = None
    ) -> None:
        self.base = base
        self.cross_encoder = cross_encoder
        self.candidates = candidates
        self.name = name or f"{base.name}+rerank"
        # CrossEncoder.predict is not documented as thread-safe; API workers share one model.
        self._lock = threading.Lock()

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        """Up to ``k`` hits ordered by cross-encoder score, best first."""
        hits = self.base.search(query, max(self.candidates, k), filters)
        if not hits:
            return []
        pairs = [(query, hit.chunk.indexed_text) for hit in hits]
        with self._lock:
            scores = self.cross_encoder.predict(
                pairs, show_progress_bar=False, convert_to_numpy=True
            )
        order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))[:k]
        return [
            Hit(chunk=hits[i].chunk, score=float(scores[i]), rank=rank, retriever=self.name)
            for rank, i in enumerate(order, start=1)
        ]
