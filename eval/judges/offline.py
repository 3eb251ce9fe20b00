"""The offline judge: the same support score the answering pipeline uses (rag.grounding:
half best embedding cosine to a context sentence, half content-word recall), thresholded at
``settings.support_threshold``. Fast and free, but it rewards wording overlap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from eval.judges.base import JudgePair
from rag.grounding import support_scores
from rag.sentences import SentenceEmbeddings

if TYPE_CHECKING:
    from rag.embeddings import Embedder


class OfflineJudge:
    """Embedding + lexical support (see :func:`rag.grounding.support_scores`)."""

    name = "offline"

    def __init__(self, embedder: Embedder, threshold: float = 0.5) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self._cache = SentenceEmbeddings(embedder)

    def support(self, pairs: Sequence[JudgePair]) -> list[float]:
        """Support of each sentence by its passages joined together."""
        if not pairs:
            return []
        sentences = [sentence for sentence, _ in pairs]
        contexts = ["\n".join(passages) for _, passages in pairs]
        return support_scores(sentences, contexts, self.embedder, self._cache)

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"offline (rag.grounding support: 0.5*embedding cosine + 0.5*content-word recall, "
            f"{self.embedder.model_name}, threshold {self.threshold:g})"
        )
