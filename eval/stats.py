"""Uncertainty and significance: seeded percentile-bootstrap confidence intervals, and
paired tests between two configurations scored on the same questions (exact McNemar for
binary outcomes, sign-flip permutation test for continuous scores), so "A beats B" comes
with a p-value."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

from rag.errors import InvalidInputError

EXACT_PERMUTATION_MAX = 16  # up to 2**16 sign patterns are enumerated exactly


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for results files."""
        return asdict(self)


def bootstrap_ci(
    values: Sequence[float], *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval | None:
    """Mean of ``values`` with a percentile-bootstrap interval (None for no values). The same
    seed and values always give the same interval."""
    data = np.asarray([float(v) for v in values], dtype=float)
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, data.size, size=(n_resamples, data.size))
    means = data[resamples].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(data.mean()), float(low), float(high), int(data.size))


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if len(a) != len(b):
        raise InvalidInputError(f"paired test needs equal lengths, got {len(a)} and {len(b)}")
    return np.asarray(a, dtype=float), np.asarray(b, dtype=float)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value for paired binary outcomes: a binomial test of the
    discordant pairs (A right / B wrong vs. A wrong / B right) against p = 0.5."""
    x, y = _paired([bool(v) for v in a], [bool(v) for v in b])
    only_a = int(np.sum((x == 1) & (y == 0)))
    only_b = int(np.sum((x == 0) & (y == 1)))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def permutation_test(
    a: Sequence[float], b: Sequence[float], *, n_resamples: int = 10000, seed: int = 0
) -> float:
    """Two-sided paired sign-flip permutation p-value for mean(a - b) = 0: exact when at most
    :data:`EXACT_PERMUTATION_MAX` pairs differ, else Monte Carlo with the +1 correction."""
    x, y = _paired(a, b)
    diffs = (x - y)[x != y]
    if diffs.size == 0:
        return 1.0
    observed = abs(diffs.sum())
    tolerance = 1e-12 * max(1.0, observed)
    if diffs.size <= EXACT_PERMUTATION_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=diffs.size)))
        sums = np.abs(signs @ diffs)
        return float(np.mean(sums >= observed - tolerance))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(n_resamples, diffs.size))
    sums = np.abs(signs @ diffs)
    return float((np.sum(sums >= observed - tolerance) + 1) / (n_resamples + 1))


def compare(
    a: Sequence[float], b: Sequence[float], *, binary: bool, seed: int = 0
) -> dict[str, Any]:
    """Paired comparison of two configurations' per-question scores: means, difference and
    p-value (exact McNemar for binary outcomes, sign-flip permutation otherwise)."""
    x, y = _paired(a, b)
    if x.size == 0:
        return {"n": 0, "mean_a": None, "mean_b": None, "diff": None, "p_value": None, "test": None}
    p_value = mcnemar_exact(x > 0.5, y > 0.5) if binary else permutation_test(x, y, seed=seed)
    return {
        "n": int(x.size),
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "diff": float(x.mean() - y.mean()),
        "p_value": p_value,
        "test": "mcnemar-exact" if binary else "paired-permutation",
    }


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two raters' binary labels: (observed − chance agreement) / (1 −
    chance agreement); None when chance agreement is 1 (both raters constant and equal)."""
    x, y = _paired([bool(v) for v in a], [bool(v) for v in b])
    if x.size == 0:
        return None
    observed = float(np.mean(x == y))
    px, py = float(x.mean()), float(y.mean())
    chance = px * py + (1 - px) * (1 - py)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)
