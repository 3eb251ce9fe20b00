"""Retrieval and answer metrics on one question at a time; the runner averages them.

Retrieval metrics take ``ranked``: for each retrieved chunk in rank order, the set of
evidence-quote indices it contains (see :mod:`eval.relevance`), and ``n_evidence``, the
number of quotes of the item.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

RECALL_KS: tuple[int, ...] = (1, 3, 5, 10)
BUDGETS: tuple[int, ...] = (1500, 3000, 6000)
NDCG_K = 10
EVIDENCE_WORD_SHARE = 0.6  # issue 13: "at least 60 % of the words of a gold evidence quote"

_MARKERS = re.compile(r"\[\s*\d+(?:\s*,\s*\d+)*\s*\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’—–…"})


def recall_any_at_k(ranked: Sequence[set[int]], k: int) -> float:
    """1.0 when any of the top ``k`` chunks contains any evidence quote (hit rate)."""
    return 1.0 if any(ranked[:k]) else 0.0


def recall_all_at_k(ranked: Sequence[set[int]], n_evidence: int, k: int) -> float:
    """1.0 when the top ``k`` chunks together contain every evidence quote."""
    if n_evidence <= 0:
        return 0.0
    found: set[int] = set().union(*ranked[:k]) if ranked[:k] else set()
    return 1.0 if len(found) >= n_evidence else 0.0


def reciprocal_rank(ranked: Sequence[set[int]]) -> float:
    """1 / rank of the first chunk containing any evidence (0 when none does)."""
    for rank, quotes in enumerate(ranked, start=1):
        if quotes:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[set[int]], n_evidence: int, k: int = NDCG_K) -> float:
    """Evidence-based nDCG@k: a chunk has gain 1 when it contains a quote that no
    higher-ranked chunk contained (so duplicates and overlapping chunks earn nothing), else
    0; the ideal ranking finds one new quote at each of the first min(n_evidence, k) ranks.
    Always in [0, 1]."""
    if n_evidence <= 0:
        return 0.0
    seen: set[int] = set()
    dcg = 0.0
    for rank, quotes in enumerate(ranked[:k], start=1):
        if quotes - seen:
            dcg += 1.0 / math.log2(rank + 1)
        seen |= quotes
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(n_evidence, k) + 1))
    return dcg / ideal


def budget_recall(found: set[int], n_evidence: int, *, require_all: bool = False) -> float:
    """1.0 when the quotes found within a character budget include any (or, with
    ``require_all``, every) evidence quote."""
    if n_evidence <= 0:
        return 0.0
    return 1.0 if (len(found) >= n_evidence if require_all else bool(found)) else 0.0


def abstention_accuracy(abstained_on_unanswerable: Sequence[bool]) -> float | None:
    """Share of unanswerable questions on which the system abstained (None without any)."""
    if not abstained_on_unanswerable:
        return None
    return sum(abstained_on_unanswerable) / len(abstained_on_unanswerable)


def false_abstention_rate(abstained_on_answerable: Sequence[bool]) -> float | None:
    """Share of answerable questions on which the system wrongly abstained (None without any)."""
    if not abstained_on_answerable:
        return None
    return sum(abstained_on_answerable) / len(abstained_on_answerable)


def answer_tokens(text: str) -> list[str]:
    """SQuAD-style tokens: citation markers, punctuation and articles removed, lower case."""
    text = _MARKERS.sub(" ", text).lower().translate(_PUNCT)
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall of ``prediction`` against ``reference``."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return 1.0 if pred == ref else 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _match_words(text: str) -> list[str]:
    """The words of ``text`` in the matching form eval.relevance uses (markup, case and
    Unicode form aside), citation markers removed."""
    from rag.qa import normalize_for_match

    return re.findall(r"\w+", normalize_for_match(_MARKERS.sub(" ", text)))


def evidence_word_share(shown: str, quote: str) -> float:
    """Share of the distinct words of ``quote`` that occur among the words of ``shown``."""
    needed = set(_match_words(quote))
    if not needed:
        return 0.0
    return len(needed & set(_match_words(shown))) / len(needed)


def evidence_in_answer(
    text: str,
    citation_quotes: Sequence[str],
    evidence: Sequence[str],
    share: float = EVIDENCE_WORD_SHARE,
) -> bool:
    """Whether an answer carries the evidence: its text plus the quotes its citations show
    contain at least ``share`` of the words of any one gold evidence quote (so "PR-AUC [1]"
    counts when citation [1] quotes the line that says so)."""
    shown = " ".join([text, *citation_quotes])
    return any(evidence_word_share(shown, quote) >= share for quote in evidence)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm else 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (linear interpolation); None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def mean(values: Sequence[float | None]) -> float | None:
    """Mean of the non-None values (None when there are none)."""
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
