"""Is the retrieved context about the question at all?

Retrievers score on different scales (cosine, BM25, RRF, cross-encoder logits), so the
abstention decision uses one scale for all of them: the cosine similarity between the query
embedding and the stored embeddings of the hits, whichever retriever ranked them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rag.types import Hit

if TYPE_CHECKING:
    from rag.store import ChunkStore


def stored_embeddings(store: ChunkStore, ids: list[str]) -> dict[str, np.ndarray]:
    """The stored (unit) embeddings of the given chunk ids; missing ids are absent."""
    if not ids:
        return {}
    page = store.collection.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
    embeddings = page.get("embeddings")
    if embeddings is None:
        return {}
    return {
        cid: np.asarray(vec, dtype=np.float32)
        for cid, vec in zip(page["ids"], embeddings, strict=True)
    }


def best_similarity(query_vector: np.ndarray, hits: list[Hit], store: ChunkStore) -> float:
    """Highest cosine similarity between the query and any hit's stored embedding
    (-1.0 when there are no hits or none is stored)."""
    vectors = stored_embeddings(store, [h.chunk.id for h in hits])
    if not vectors:
        return -1.0
    matrix = np.stack(list(vectors.values()))
    norms = np.linalg.norm(matrix, axis=1) * (float(np.linalg.norm(query_vector)) or 1.0)
    sims = (matrix @ query_vector) / np.where(norms == 0, 1.0, norms)
    return float(np.max(sims))


def is_relevant(similarity: float, threshold: float) -> bool:
    """Whether the best similarity clears the abstention threshold."""
    return similarity >= threshold
