"""Calibration on dev (threshold, page boost) reported on test, and ``mlrag eval calibrate``."""

from __future__ import annotations

from pathlib import Path

from eval.calibrate import abstention_rates, choose_rule, choose_threshold, run_calibration
from rag.config import Settings
from rag.coverage import CoverageSignal
from rag.pipeline import RAG
from tests.eval.tiny_corpus import GOLD, build_tiny_store, write_gold

DEV = {"page-001", "numpy-001", "unans-001"}


def test_choose_threshold_hand_case() -> None:
    sims = [0.6, 0.5, 0.45, 0.7, 0.2, 0.3, 0.48]
    answerable = [True, True, True, True, False, False, False]
    # Abstaining below 0.49: all 3 unanswerable abstain, one answerable (0.45) too -> 1 - 1/4.
    # Below 0.375: 2/3 - 0. Below 0.465: 2/3 - 1/4. So 0.49 is the unique best.
    assert choose_threshold(sims, answerable) == (0.49, 0.75)
    assert abstention_rates(sims, answerable, 0.49) == (1.0, 0.25)
    # Perfectly separable: the middle of the gap is never chosen over a worse threshold.
    threshold, best = choose_threshold([0.8, 0.9, 0.1, 0.2], [True, True, False, False])
    assert best == 1.0 and 0.2 < threshold < 0.8


def test_choose_rule_uses_the_term_check_where_similarity_cannot_separate() -> None:
    signals = [
        CoverageSignal(0.6),
        CoverageSignal(0.5, (("pandas", 40),)),  # a frequent term: no reason to abstain
        CoverageSignal(0.45),
        CoverageSignal(0.7, (("deepspeed", 0),)),  # near-miss: similar context, unknown name
        CoverageSignal(0.2),  # off-topic
    ]
    answerable = [True, True, True, False, False]
    sims = [s.similarity for s in signals]
    assert choose_threshold(sims, answerable)[1] < 1.0  # similarity alone cannot separate them
    threshold, max_df, best = choose_rule(signals, answerable, term_dfs=(-1, 0, 10, 50))
    assert best == 1.0 and max_df in (0, 10) and 0.2 < threshold <= 0.45
    assert abstention_rates(sims, answerable, threshold, [False, False, False, True, False]) == (
        1.0,
        0.0,
    )


def test_run_calibration_on_a_tiny_store(settings: Settings, embedder, tmp_path: Path) -> None:
    items = [{**i, "split": "dev" if i["id"] in DEV else "test"} for i in GOLD]
    items.append(
        {
            **GOLD[-1],
            "id": "unans-002",
            "question": "Who won the 2018 FIFA World Cup?",
            "split": "test",
        }
    )
    gold = write_gold(tmp_path / "gold.jsonl", items)
    rag = RAG(settings, embedder=embedder, store=build_tiny_store(settings, embedder))
    result = run_calibration(
        settings, [gold], retriever="dense", k=3, boosts=(1.0, 1.5), out=tmp_path / "cal", rag=rag
    )
    t = result["abstain_threshold"]
    dev_sims = {d["id"]: d["best_similarity"] for d in result["similarities"]["dev"]}
    # The chosen threshold separates the dev unanswerable item from the dev answerable ones.
    assert (
        dev_sims["unans-001"] < t["threshold"] <= min(dev_sims["page-001"], dev_sims["numpy-001"])
    )
    assert t["dev_abstention_accuracy"] == 1.0 and t["dev_false_abstention"] == 0.0
    assert t["current_term_max_df"] == settings.abstain_term_max_df and "term_max_df" in t
    dev_rows = {d["id"]: d for d in result["similarities"]["dev"]}
    assert ["australia", 0] in dev_rows["unans-001"]["uncovered_terms"]
    assert dev_rows["page-001"]["uncovered_terms"] == []
    assert (
        t["test_abstention_accuracy"] is not None
        and t["current_threshold"] == settings.abstain_threshold
    )
    boost = result["source_boost"]
    assert boost["chosen"] in (1.0, 1.5) and set(boost["dev"]) == {"1.0", "1.5"}
    assert boost["test_none"]["all"] == 1.0  # three tiny documents: everything fits in 3,000 chars
    assert (tmp_path / "cal" / "calibration.json").exists()
