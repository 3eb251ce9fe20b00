"""Per-question scoring: retrieval metrics from ranked hits, and answer metrics (abstention,
citation validity, groundedness, correctness) from an answer with its context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eval.gold import GoldItem
from eval.judges.base import Judge, JudgePair
from eval.metrics import (
    BUDGETS,
    NDCG_K,
    RECALL_KS,
    budget_recall,
    cosine,
    evidence_in_answer,
    ndcg_at_k,
    recall_all_at_k,
    recall_any_at_k,
    reciprocal_rank,
    token_f1,
)
from eval.relevance import evidence_by_rank, quotes_within_budget
from rag.citations import split_answer

if TYPE_CHECKING:
    from rag.embeddings import Embedder

RETRIEVAL_METRICS: tuple[str, ...] = (
    *(f"recall_any@{k}" for k in RECALL_KS),
    *(f"recall_all@{k}" for k in RECALL_KS),
    "mrr",
    f"ndcg@{NDCG_K}",
    *(f"budget_any@{b}" for b in BUDGETS),
    *(f"budget_all@{b}" for b in BUDGETS),
)


def score_retrieval(item: GoldItem, texts: Sequence[str]) -> dict[str, Any]:
    """Every retrieval metric of one answerable item from its ranked chunk texts, plus the
    rank of the first relevant chunk (None when no retrieved chunk holds evidence)."""
    n = len(item.evidence)
    ranked = evidence_by_rank(texts, item.evidence)
    scores: dict[str, Any] = {}
    for k in RECALL_KS:
        scores[f"recall_any@{k}"] = recall_any_at_k(ranked, k)
        scores[f"recall_all@{k}"] = recall_all_at_k(ranked, n, k)
    scores["mrr"] = reciprocal_rank(ranked)
    scores[f"ndcg@{NDCG_K}"] = ndcg_at_k(ranked, n, NDCG_K)
    for budget in BUDGETS:
        found = quotes_within_budget(texts, item.evidence, budget)
        scores[f"budget_any@{budget}"] = budget_recall(found, n)
        scores[f"budget_all@{budget}"] = budget_recall(found, n, require_all=True)
    scores["first_relevant_rank"] = next((r for r, q in enumerate(ranked, start=1) if q), None)
    return scores


def _claims(answer: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """(plain sentence, cited block numbers) of each claim of a non-abstained answer."""
    if answer.get("abstained"):
        return []
    return [(s.plain, s.numbers) for s in split_answer(answer.get("text", "")) if s.plain]


def _evidence_in_answer(item: GoldItem, answer: dict[str, Any]) -> bool | None:
    """Evidence in the answer for an answerable item with evidence (an abstention carries
    none); None for every other item."""
    if not item.answerable or not item.evidence:
        return None
    if answer.get("abstained") or not answer.get("text"):
        return False
    quotes = [str(c.get("quote") or "") for c in answer.get("citations", [])]
    return evidence_in_answer(answer["text"], quotes, item.evidence)


def score_answers(
    items: Sequence[GoldItem],
    answers: Sequence[dict[str, Any]],
    judge: Judge,
    embedder: Embedder,
) -> list[dict[str, Any]]:
    """Answer metrics of each (item, answer) pair; the judge sees all pairs in one batch.

    Citation validity: each (sentence, cited block) pair is valid when the judge finds the
    block supports the sentence. Groundedness: a sentence is grounded when its cited blocks
    together (all context blocks when it cites none, as rag.grounding does) support it.
    Citation recall (as in ALCE, Gao et al. 2023): the share of a sentence that cites at least
    one block and whose cited blocks together support it — an uncited sentence counts as a
    miss, so an answer that never cites scores 0 instead of having no citation validity.
    Correctness (answerable, answered items with a reference answer only): token F1 and
    embedding cosine against the reference answer. Evidence in the answer (answerable items
    with evidence): see :func:`eval.metrics.evidence_in_answer`; an abstention scores False.
    ``cites``: whether a non-declined answer has at least one citation. Unlabelled items
    (``answerable`` None) get only the metrics that need no reference."""
    citation_pairs: list[JudgePair] = []
    ground_pairs: list[JudgePair] = []
    plans: list[tuple[list[tuple[str, list[int]]], list[tuple[int, int]]]] = []
    for answer in answers:
        texts = [h["text"] for h in answer.get("hits", [])]
        claims = _claims(answer)
        pair_index: list[tuple[int, int]] = []  # (claim index, block number)
        for ci, (sentence, numbers) in enumerate(claims):
            valid_numbers = [n for n in numbers if 1 <= n <= len(texts)]
            for n in valid_numbers:
                citation_pairs.append((sentence, [texts[n - 1]]))
                pair_index.append((ci, n))
            ground_pairs.append((sentence, [texts[n - 1] for n in valid_numbers] or texts))
        plans.append((claims, pair_index))
    citation_support = judge.support(citation_pairs) if citation_pairs else []
    ground_support = judge.support(ground_pairs) if ground_pairs else []

    answered = [
        (i, a)
        for i, (item, a) in enumerate(zip(items, answers, strict=True))
        if item.answerable and item.reference and not a.get("abstained") and a.get("text")
    ]
    similarity: dict[int, float] = {}
    if answered:
        plain = [" ".join(s for s, _ in _claims(a)) or a["text"] for _, a in answered]
        refs = [items[i].reference for i, _ in answered]
        vectors = embedder.embed_documents(plain + refs)
        for j, (i, _) in enumerate(answered):
            similarity[i] = round(cosine(vectors[j], vectors[len(answered) + j]), 4)

    results: list[dict[str, Any]] = []
    c_at = g_at = 0
    for i, (item, answer, (claims, pair_index)) in enumerate(
        zip(items, answers, plans, strict=True)
    ):
        sentences = []
        for ci, (sentence, numbers) in enumerate(claims):
            support = ground_support[g_at]
            g_at += 1
            cites = []
            for pi, n in pair_index:
                if pi == ci:
                    score = citation_support[c_at]
                    c_at += 1
                    cites.append({"n": n, "support": score, "valid": score >= judge.threshold})
            sentences.append(
                {
                    "text": sentence,
                    "numbers": numbers,
                    "support": support,
                    "grounded": support >= judge.threshold,
                    "citations": cites,
                }
            )
        pairs = [c for s in sentences for c in s["citations"]]
        abstained = bool(answer.get("abstained"))
        answered_text = not abstained and bool(answer.get("text"))
        results.append(
            {
                "abstained": abstained,
                # Unlabelled items (answerable None) get neither abstention metric.
                "correct_abstention": (abstained if item.answerable is False else None),
                "false_abstention": (abstained if item.answerable else None),
                "evidence_in_answer": _evidence_in_answer(item, answer),
                "cites": (bool(answer.get("citations")) if answered_text else None),
                "sentences": sentences,
                "citation_validity": (sum(c["valid"] for c in pairs) / len(pairs))
                if pairs
                else None,
                "n_citation_pairs": len(pairs),
                "groundedness": (
                    sum(s["grounded"] for s in sentences) / len(sentences) if sentences else None
                ),
                "citation_recall": (
                    sum(bool(s["citations"]) and s["grounded"] for s in sentences) / len(sentences)
                    if sentences
                    else None
                ),
                "token_f1": (
                    round(token_f1(answer.get("text", ""), item.reference), 4)
                    if i in similarity
                    else None
                ),
                "embedding_similarity": similarity.get(i),
            }
        )
    return results
