"""The NLI judge: a sentence is supported when an NLI cross-encoder says some passage
entails it. Any ``sentence_transformers.CrossEncoder`` NLI model works, by path or hub name
(e.g. ``cross-encoder/nli-deberta-v3-small``); no NLI weights ship offline here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.judges.base import JudgePair
from rag.errors import ModelUnavailableError


def entailment_index(id2label: dict[Any, str]) -> int | None:
    """The output index whose label names entailment (None when no label does)."""
    for index, label in id2label.items():
        if "entail" in str(label).lower() and "not" not in str(label).lower():
            return int(index)
    return None


class NLIJudge:
    """Support = the highest entailment probability of the sentence given any one passage
    (premise = passage, hypothesis = sentence)."""

    name = "nli"

    def __init__(
        self, model: str, threshold: float = 0.5, threads: int = 1, batch_size: int = 16
    ) -> None:
        from sentence_transformers import CrossEncoder

        from rag.embeddings import configure_torch_threads

        configure_torch_threads(threads)
        try:
            self.model = CrossEncoder(model, device="cpu")
        except Exception as exc:  # noqa: BLE001 - any load failure means the same to users
            raise ModelUnavailableError(f"cannot load NLI model {model!r}: {exc}") from exc
        self.model_name = model
        self.threshold = threshold
        self.batch_size = batch_size
        config = self.model.model.config
        self.num_labels = int(config.num_labels)
        self.entail = entailment_index(dict(config.id2label or {}))
        if self.num_labels > 1 and self.entail is None:
            raise ModelUnavailableError(
                f"NLI model {model!r} has no 'entailment' label in id2label={config.id2label}"
            )

    def _probabilities(self, premise_hypothesis: list[tuple[str, str]]) -> np.ndarray:
        scores = self.model.predict(
            premise_hypothesis,
            batch_size=self.batch_size,
            apply_softmax=self.num_labels > 1,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        scores = np.asarray(scores, dtype=float)
        if self.num_labels == 1:  # a single-logit model: sigmoid of its score
            return 1.0 / (1.0 + np.exp(-scores.reshape(-1)))
        return scores[:, self.entail]

    def support(self, pairs: Sequence[JudgePair]) -> list[float]:
        """Best entailment probability of each sentence over its passages."""
        flat: list[tuple[str, str]] = []
        owner: list[int] = []
        for i, (sentence, passages) in enumerate(pairs):
            for passage in passages or [""]:
                flat.append((passage, sentence))
                owner.append(i)
        if not flat:
            return []
        probabilities = self._probabilities(flat)
        best = [0.0] * len(pairs)
        for i, p in zip(owner, probabilities, strict=True):
            best[i] = max(best[i], float(p))
        return [round(b, 4) for b in best]

    def describe(self) -> str:
        """One line for reports."""
        return f"nli (CrossEncoder {self.model_name}, P(entailment) ≥ {self.threshold:g})"
