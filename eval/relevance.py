"""Relevance by evidence, not by chunk id: a retrieved chunk is relevant to a gold item when
its normalised text contains one of the item's normalised evidence quotes. Labels therefore
survive any change of chunking.

Normalisation and matching are rag.qa's (:func:`~rag.qa.normalize_for_match`: NFKC, lower
case, markup characters dropped, whitespace collapsed) — the same ones the validator, the
fine-tuning data builder and ingest's checks use.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.qa import contains_quote, normalized  # noqa: F401 - eval's matcher is rag.qa's

# The matching form of a text (cached), under the name the eval has always used.
normalize = normalized


def quotes_in(text: str, evidence: Sequence[str]) -> set[int]:
    """Indices of the evidence quotes that ``text`` contains."""
    return {i for i, quote in enumerate(evidence) if contains_quote(text, quote)}


def evidence_by_rank(texts: Sequence[str], evidence: Sequence[str]) -> list[set[int]]:
    """For each ranked chunk text, the indices of the evidence quotes it contains."""
    return [quotes_in(text, evidence) for text in texts]


def quotes_within_budget(texts: Sequence[str], evidence: Sequence[str], budget: int) -> set[int]:
    """Evidence quotes found inside the first ``budget`` characters of the ranked chunk texts
    concatenated in rank order. A chunk straddling the budget contributes only its visible
    prefix; each chunk is matched on its own so no quote is ever found across a join."""
    found: set[int] = set()
    used = 0
    for text in texts:
        if used >= budget:
            break
        visible = text[: budget - used]
        used += len(text)
        found |= quotes_in(visible, evidence)
    return found
