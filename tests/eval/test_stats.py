"""Bootstrap intervals and paired tests on hand-computable cases."""

from __future__ import annotations

import pytest

from eval.stats import bootstrap_ci, compare, mcnemar_exact, permutation_test
from rag.errors import InvalidInputError


def test_bootstrap_ci_on_a_known_distribution_is_seeded() -> None:
    values = [i / 99 for i in range(100)]  # uniform on [0, 1]: mean 0.5, sd 0.2916
    ci = bootstrap_ci(values, seed=0)
    assert ci is not None and ci.mean == pytest.approx(0.5) and ci.n == 100
    # Normal approximation: 0.5 ± 1.96 * 0.2916 / 10 = [0.443, 0.557].
    assert 0.43 < ci.low < 0.455 and 0.545 < ci.high < 0.57
    assert bootstrap_ci(values, seed=0) == ci
    assert bootstrap_ci(values, seed=1) != ci
    constant = bootstrap_ci([0.7] * 10)
    assert constant is not None and constant.low == constant.high == pytest.approx(0.7)
    assert bootstrap_ci([]) is None


def test_permutation_test_exact_on_tiny_vectors() -> None:
    # Differences 1, 2, 3: of the 8 sign patterns only +++ and --- reach |sum| = 6.
    assert permutation_test([1, 2, 3], [0, 0, 0]) == pytest.approx(2 / 8)
    # Differences 1, 1, 1, 1, -1 (observed |sum| = 3): of the 32 sign patterns, |sum| = 5 for
    # 2 and |sum| = 3 for 10 (one of the five signs flipped, either way round): 12 in all.
    assert permutation_test([1, 1, 1, 1, 0], [0, 0, 0, 0, 1]) == pytest.approx(12 / 32)
    assert permutation_test([1, 2], [1, 2]) == 1.0
    with pytest.raises(InvalidInputError):
        permutation_test([1], [1, 2])


def test_permutation_test_monte_carlo_is_seeded_and_small_for_clear_effects() -> None:
    a = [1.0] * 30
    b = [0.0] * 30
    p = permutation_test(a, b, seed=3)
    assert p == permutation_test(a, b, seed=3)
    assert p < 0.001


def test_mcnemar_exact() -> None:
    # 6 discordant pairs all favouring A: p = 2 * 0.5**6.
    assert mcnemar_exact([1] * 6 + [1] * 4, [0] * 6 + [1] * 4) == pytest.approx(2 * 0.5**6)
    # 5 vs 1: p = 2 * (C(6,0) + C(6,1)) / 64 = 14/64.
    assert mcnemar_exact([1] * 5 + [0], [0] * 5 + [1]) == pytest.approx(14 / 64)
    assert mcnemar_exact([1, 0], [1, 0]) == 1.0


def test_compare_picks_the_test_by_outcome_type() -> None:
    binary = compare([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], binary=True)
    assert binary["test"] == "mcnemar-exact" and binary["p_value"] == pytest.approx(2 * 0.5**6)
    assert binary["diff"] == 1.0
    continuous = compare([1, 2, 3], [0, 0, 0], binary=False)
    assert continuous["test"] == "paired-permutation" and continuous["p_value"] == pytest.approx(
        0.25
    )
    assert compare([], [], binary=True)["p_value"] is None


def test_cohen_kappa_hand_case() -> None:
    from eval.stats import cohen_kappa

    a = [True, True, True, False, False, False, True, False]
    b = [True, True, False, False, False, True, True, False]
    # Observed 6/8 = 0.75; chance 0.5*0.5 + 0.5*0.5 = 0.5; kappa = 0.25 / 0.5.
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa([True, True], [True, True]) is None  # chance agreement 1: undefined
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)
