"""Every metric on small hand-computed cases."""

from __future__ import annotations

import math

import pytest

from eval.metrics import (
    abstention_accuracy,
    budget_recall,
    false_abstention_rate,
    ndcg_at_k,
    percentile,
    recall_all_at_k,
    recall_any_at_k,
    reciprocal_rank,
    token_f1,
)
from eval.relevance import quotes_within_budget

# Rank 2 holds quote 0, rank 4 quote 1, rank 5 quote 0 again.
RANKED = [set(), {0}, set(), {1}, {0}]


def test_recall_any_and_all_at_k() -> None:
    assert [recall_any_at_k(RANKED, k) for k in (1, 2, 3, 5)] == [0.0, 1.0, 1.0, 1.0]
    assert [recall_all_at_k(RANKED, 2, k) for k in (1, 3, 4, 10)] == [0.0, 0.0, 1.0, 1.0]
    assert recall_any_at_k([], 5) == 0.0 and recall_all_at_k([], 1, 5) == 0.0


def test_mrr() -> None:
    assert reciprocal_rank(RANKED) == 0.5
    assert reciprocal_rank([{0}]) == 1.0
    assert reciprocal_rank([set(), set()]) == 0.0


def test_ndcg_known_value() -> None:
    # New quotes at ranks 2 and 4; the repeat at rank 5 earns nothing.
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(RANKED, 2, 10) == pytest.approx(dcg / ideal)  # 0.6509
    assert ndcg_at_k(RANKED, 2, 10) == pytest.approx(0.65092, abs=1e-4)
    assert ndcg_at_k([{0, 1}], 2, 10) == pytest.approx(1 / ideal)  # two quotes, one chunk
    assert ndcg_at_k([{0}, {0}, {0}], 1, 10) == 1.0
    assert ndcg_at_k(RANKED, 2, 3) == pytest.approx((1 / math.log2(3)) / ideal)


def test_budget_recall_with_a_chunk_straddling_the_budget() -> None:
    early, late = "gradient clipping stops explosions", "warmup avoids early divergence"
    first = "x " * 500  # 1,000 characters
    # Second chunk: `early` starts at character 1,450, `late` at 1,700 of the concatenation.
    second = "y" * 450 + early + " " + "z" * 215 + late
    texts = [first, second]
    evidence = [early, late]
    assert quotes_within_budget(texts, evidence, 1000) == set()
    assert quotes_within_budget(texts, evidence, 1500) == {0}  # visible prefix only
    assert quotes_within_budget(texts, evidence, 1480) == set()  # quote cut by the budget
    assert quotes_within_budget(texts, evidence, 3000) == {0, 1}
    assert budget_recall({0}, 2) == 1.0 and budget_recall({0}, 2, require_all=True) == 0.0
    assert budget_recall({0, 1}, 2, require_all=True) == 1.0 and budget_recall(set(), 2) == 0.0


def test_quotes_are_never_matched_across_chunk_joins() -> None:
    assert (
        quotes_within_budget(["the learning", "rate sets the step"], ["learning rate"], 3000)
        == set()
    )


def test_abstention_metrics() -> None:
    assert abstention_accuracy([True, True, False, True]) == 0.75
    assert false_abstention_rate([False, True, False, False, False]) == 0.2
    assert abstention_accuracy([]) is None and false_abstention_rate([]) is None


def test_token_f1() -> None:
    # "the" and the marker are dropped: pred {cat, sat}, ref {cat, sat, down} -> P=1, R=2/3.
    assert token_f1("The cat sat [1].", "a cat sat down") == pytest.approx(0.8)
    assert token_f1("PR-AUC.", "pr auc") == 1.0
    assert token_f1("nothing shared", "entirely different") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0


def test_percentile() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10.0], 95) == 10.0 and percentile([], 50) is None
