"""``mlrag eval calibrate``: tune on the DEV split only, report on the held-out TEST split.

1. The abstention rule (see rag.coverage) that maximises abstention accuracy minus
   false-abstention rate on dev: ``settings.abstain_term_max_df`` (a specific question term in
   at most this many corpus chunks must appear in the context; -1 = no term check) together
   with ``settings.abstain_threshold`` (the least best dense similarity between the query and
   any retrieved chunk). The similarity-only rule is reported beside it for comparison.
2. The ``source_boost`` of the user's page (topic ``machine-learning``) that maximises recall
   within 3,000 characters on dev answerable items (page and linked together, since a strong
   boost helps page questions and can hurt linked ones).

The chosen values are printed and recorded in ``calibration.json``; nothing is written into
the configuration (the lead applies them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.gold import PAGE_TOPIC, GoldItem, gold_hash, load_gold, select_split
from eval.metrics import abstention_accuracy, false_abstention_rate
from eval.scoring import score_retrieval
from rag.abstention import AbstentionRule
from rag.errors import InvalidInputError

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.coverage import CoverageSignal
    from rag.pipeline import RAG

DEFAULT_BOOSTS: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.5, 2.0, 2.5, 3.0, 4.0)
HEADLINE = "budget_any@3000"
# Thresholds at which the accuracy / false-abstention trade-off is also reported.
CURVE_THRESHOLDS: tuple[float, ...] = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
# Candidate corpus-frequency limits of the specific-term check (-1: no term check).
DEFAULT_TERM_DFS: tuple[int, ...] = (-1, 0, 1, 2, 3, 5, 10, 20, 50)


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen rule (threshold and term check) with its dev objective and held-out test
    numbers, beside the current settings' and the similarity-only rule's test numbers."""

    threshold: float
    dev_objective: float
    dev_abstention_accuracy: float | None
    dev_false_abstention: float | None
    test_abstention_accuracy: float | None
    test_false_abstention: float | None
    current_threshold: float
    test_abstention_accuracy_current: float | None
    test_false_abstention_current: float | None
    term_max_df: int = -1
    current_term_max_df: int = -1
    similarity_only_threshold: float | None = None
    similarity_only_dev_objective: float | None = None
    test_abstention_accuracy_similarity_only: float | None = None
    test_false_abstention_similarity_only: float | None = None


def coverage_signals(
    rag: RAG, items: Sequence[GoldItem], retriever: str, k: int
) -> list[CoverageSignal]:
    """The relevance signals per item, exactly as ``RAG.ask`` computes them."""
    return [
        rag.coverage(item.question, rag.search(item.question, k=k, retriever=retriever))
        for item in items
    ]


def best_similarities(rag: RAG, items: Sequence[GoldItem], retriever: str, k: int) -> list[float]:
    """The best query-to-hit dense similarity per item, exactly as ``RAG.ask`` computes it."""
    return [signal.similarity for signal in coverage_signals(rag, items, retriever, k)]


def term_flags(signals: Sequence[CoverageSignal], max_df: int) -> list[bool]:
    """Per item, whether the term check alone abstains with limit ``max_df``."""
    rule = AbstentionRule(threshold=float("-inf"), term_max_df=max_df)
    return [bool(rule.missing_terms(signal)) for signal in signals]


def abstention_rates(
    sims: Sequence[float],
    answerable: Sequence[bool],
    threshold: float,
    forced: Sequence[bool] | None = None,
) -> tuple[float | None, float | None]:
    """(abstention accuracy, false-abstention rate) when abstaining below ``threshold``, and
    also wherever ``forced`` is true (the term check)."""
    forced = forced if forced is not None else [False] * len(sims)
    rule = AbstentionRule(threshold=threshold, term_max_df=-1)
    abstain = [rule.abstains(s, f) for s, f in zip(sims, forced, strict=True)]
    on_unanswerable = [a for a, ok in zip(abstain, answerable, strict=True) if not ok]
    on_answerable = [a for a, ok in zip(abstain, answerable, strict=True) if ok]
    return abstention_accuracy(on_unanswerable), false_abstention_rate(on_answerable)


def objective(accuracy: float | None, false_rate: float | None) -> float:
    """Abstention accuracy minus false-abstention rate (a missing side counts as 0)."""
    return (accuracy or 0.0) - (false_rate or 0.0)


def choose_threshold(
    sims: Sequence[float], answerable: Sequence[bool], forced: Sequence[bool] | None = None
) -> tuple[float, float]:
    """The threshold maximising :func:`objective` (abstaining also where ``forced``) and its
    value. Candidates are the midpoints between consecutive distinct similarities (plus one
    below and one above all); among equally good ones the middle candidate is taken, for the
    widest margin."""
    values = sorted(set(round(s, 6) for s in sims))
    if not values:
        raise InvalidInputError("no similarities to calibrate on")
    candidates = [
        values[0] - 1e-3,
        *((a + b) / 2 for a, b in zip(values, values[1:], strict=False)),
        values[-1] + 1e-3,
    ]
    scored = [(objective(*abstention_rates(sims, answerable, t, forced)), t) for t in candidates]
    best = max(score for score, _ in scored)
    tied = [t for score, t in scored if abs(score - best) < 1e-12]
    return round(tied[len(tied) // 2], 4), best


def choose_rule(
    signals: Sequence[CoverageSignal],
    answerable: Sequence[bool],
    term_dfs: Sequence[int] = DEFAULT_TERM_DFS,
) -> tuple[float, int, float]:
    """(threshold, term limit, objective) maximising :func:`objective` over ``term_dfs``,
    each with its best threshold; among equally good limits the middle one is taken."""
    sims = [signal.similarity for signal in signals]
    scored = []
    for max_df in sorted(term_dfs):
        threshold, best = choose_threshold(sims, answerable, term_flags(signals, max_df))
        scored.append((best, max_df, threshold))
    top = max(score for score, _, _ in scored)
    tied = [(max_df, threshold) for score, max_df, threshold in scored if abs(score - top) < 1e-12]
    max_df, threshold = tied[len(tied) // 2]
    return threshold, max_df, top


def calibrate_threshold(
    rag: RAG,
    dev: Sequence[GoldItem],
    test: Sequence[GoldItem],
    retriever: str,
    k: int,
    term_dfs: Sequence[int] = DEFAULT_TERM_DFS,
) -> tuple[ThresholdChoice, dict[str, Any]]:
    """Choose the abstention rule on ``dev`` and measure it, the current settings and the
    similarity-only rule on ``test``."""
    dev_signals = coverage_signals(rag, dev, retriever, k)
    dev_sims = [s.similarity for s in dev_signals]
    dev_ok = [i.answerable for i in dev]
    if all(dev_ok):
        raise InvalidInputError(
            "the dev split has no unanswerable items: cannot calibrate abstention"
        )
    threshold, max_df, best = choose_rule(dev_signals, dev_ok, term_dfs)
    dev_acc, dev_false = abstention_rates(
        dev_sims, dev_ok, threshold, term_flags(dev_signals, max_df)
    )
    sim_threshold, sim_best = choose_threshold(dev_sims, dev_ok)
    test_signals = coverage_signals(rag, test, retriever, k)
    test_sims = [s.similarity for s in test_signals]
    test_ok = [i.answerable for i in test]

    def on_test(t: float, df: int) -> tuple[float | None, float | None]:
        if not test:
            return None, None
        return abstention_rates(test_sims, test_ok, t, term_flags(test_signals, df))

    current, current_df = rag.settings.abstain_threshold, rag.settings.abstain_term_max_df
    choice = ThresholdChoice(
        threshold, best, dev_acc, dev_false, *on_test(threshold, max_df),
        current, *on_test(current, current_df),
        term_max_df=max_df, current_term_max_df=current_df,
        similarity_only_threshold=sim_threshold, similarity_only_dev_objective=sim_best,
    )  # fmt: skip
    sim_acc, sim_false = on_test(sim_threshold, -1)
    choice = dataclasses.replace(
        choice,
        test_abstention_accuracy_similarity_only=sim_acc,
        test_false_abstention_similarity_only=sim_false,
    )
    dev_flags = term_flags(dev_signals, max_df)
    test_flags = term_flags(test_signals, max_df)
    curve = [
        {
            "threshold": t,
            "dev": abstention_rates(dev_sims, dev_ok, t, dev_flags),
            "test": abstention_rates(test_sims, test_ok, t, test_flags) if test else (None, None),
        }
        for t in CURVE_THRESHOLDS
    ]
    term_grid = [
        {"term_max_df": df, "dev": abstention_rates(dev_sims, dev_ok, threshold, term_flags(dev_signals, df))}
        for df in sorted(term_dfs)
    ]  # fmt: skip

    def rows(items: Sequence[GoldItem], signals: Sequence[CoverageSignal]) -> list[dict[str, Any]]:
        return [
            {"id": i.id, "answerable": i.answerable, "best_similarity": s.similarity,
             "uncovered_terms": [list(u) for u in s.uncovered]}
            for i, s in zip(items, signals, strict=True)
        ]  # fmt: skip

    detail = {
        "curve": curve,
        "term_grid": term_grid,
        "dev": rows(dev, dev_signals),
        "test": rows(test, test_signals),
    }
    return choice, detail


def _boost_recall(
    rag: RAG, items: Sequence[GoldItem], retriever: str, depth: int
) -> dict[str, float | None]:
    scores: dict[str, list[float]] = {"all": [], "page": [], "linked": []}
    for item in items:
        hits = rag.search(item.question, k=depth, retriever=retriever)
        value = score_retrieval(item, [h.chunk.text for h in hits])[HEADLINE]
        scores["all"].append(value)
        if item.group in scores:
            scores[item.group].append(value)
    return {g: (sum(v) / len(v) if v else None) for g, v in scores.items()}


def calibrate_boost(
    rag: RAG,
    dev: Sequence[GoldItem],
    test: Sequence[GoldItem],
    retriever: str,
    boosts: Sequence[float] = DEFAULT_BOOSTS,
    depth: int = 20,
) -> dict[str, Any]:
    """Recall within 3,000 characters per page boost on dev; the best boost (ties: the one
    closest to 1.0) and its effect on test against no boost."""
    from rag.pipeline import RAG

    def variant(boost: float) -> RAG:
        prior = {**rag.settings.source_boost, PAGE_TOPIC: boost}
        settings = rag.settings.model_copy(update={"source_boost": prior})
        return RAG(settings, embedder=rag.embedder, store=rag.store)

    dev_items = [i for i in dev if i.answerable]
    test_items = [i for i in test if i.answerable]
    grid = {b: _boost_recall(variant(b), dev_items, retriever, depth) for b in boosts}
    best = max(boosts, key=lambda b: ((grid[b]["all"] or 0.0), -abs(b - 1.0)))
    return {
        "retriever": retriever,
        "topic": PAGE_TOPIC,
        "dev": {str(b): v for b, v in grid.items()},
        "chosen": best,
        "test_chosen": _boost_recall(variant(best), test_items, retriever, depth),
        "test_none": _boost_recall(variant(1.0), test_items, retriever, depth),
    }


def run_calibration(
    settings: Settings,
    gold: Sequence[Path],
    *,
    retriever: str | None = None,
    k: int | None = None,
    boosts: Sequence[float] = DEFAULT_BOOSTS,
    boost_retriever: str | None = None,
    out: Path | None = None,
    rag: RAG | None = None,
    term_dfs: Sequence[int] = DEFAULT_TERM_DFS,
) -> dict[str, Any]:
    """Calibrate the abstention rule and the page boost on dev, report test."""
    from rag.pipeline import RAG

    rag = rag or RAG(settings)
    items = [i for i in load_gold(gold) if i.labelled]  # unlabelled items have no label to fit
    dev, test = select_split(items, "dev"), select_split(items, "test")
    if not dev:
        raise InvalidInputError("the gold set has no dev items")
    retriever = retriever or settings.retriever
    k = k or settings.k
    result: dict[str, Any] = {
        "gold_hash": gold_hash(gold),
        "corpus_version": rag.store.corpus_version(),
        "retriever": retriever,
        "k": k,
        "dev_items": len(dev),
        "test_items": len(test),
    }
    try:
        choice, detail = calibrate_threshold(rag, dev, test, retriever, k, term_dfs)
        result["abstain_threshold"] = asdict(choice)
        result["similarities"] = detail
    except InvalidInputError as exc:
        result["abstain_threshold"] = {"error": str(exc)}
    result["source_boost"] = calibrate_boost(rag, dev, test, boost_retriever or retriever, boosts)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def format_calibration(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run_calibration`'s result."""
    lines = [f"calibration on dev ({result['dev_items']} items), reported on test ({result['test_items']} items); "
             f"retriever {result['retriever']}, k={result['k']}"]  # fmt: skip

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    t = result["abstain_threshold"]
    if "error" in t:
        lines.append(f"abstain_threshold: not calibrated: {t['error']}")
    else:
        lines.append(
            f"abstain_threshold = {t['threshold']:.4f}, abstain_term_max_df = {t['term_max_df']}  "
            f"(dev: accuracy {f(t['dev_abstention_accuracy'])}, false abstention {f(t['dev_false_abstention'])})"
        )
        lines.append(
            f"  test with them: accuracy {f(t['test_abstention_accuracy'])}, false abstention "
            f"{f(t['test_false_abstention'])}; with current {t['current_threshold']}/{t['current_term_max_df']}: "
            f"accuracy {f(t['test_abstention_accuracy_current'])}, false abstention {f(t['test_false_abstention_current'])}"
        )
        if t.get("similarity_only_threshold") is not None:
            lines.append(
                f"  similarity only (dev-optimal {t['similarity_only_threshold']:.4f}): test accuracy "
                f"{f(t['test_abstention_accuracy_similarity_only'])}, false abstention "
                f"{f(t['test_false_abstention_similarity_only'])}"
            )
        for row in result.get("similarities", {}).get("term_grid", []):
            da, df = row["dev"]
            lines.append(f"  term_max_df {row['term_max_df']:>3}: dev {f(da)}/{f(df)}")
    curve = result.get("similarities", {}).get("curve", [])
    if curve:
        lines.append(
            "  trade-off with the chosen term check (threshold: dev accuracy/false abstention | test accuracy/false abstention):"
        )
        for row in curve:
            (da, df), (ta, tf) = row["dev"], row["test"]
            lines.append(f"    {row['threshold']:.2f}: {f(da)}/{f(df)} | {f(ta)}/{f(tf)}")
    b = result["source_boost"]
    grid = ", ".join(f"{k}: {v['all']:.2f}" for k, v in b["dev"].items() if v["all"] is not None)
    lines.append(
        f"source_boost[{b['topic']}] = {b['chosen']}  (dev recall ≤3,000 chars by boost: {grid})"
    )
    tc, tn = b["test_chosen"], b["test_none"]

    def g(d: dict[str, float | None], key: str) -> str:
        return "–" if d.get(key) is None else f"{d[key]:.2f}"

    lines.append(
        f"  test recall ≤3,000 chars with {b['chosen']}: all {g(tc, 'all')}, page {g(tc, 'page')}, linked {g(tc, 'linked')}; "
        f"without boost: all {g(tn, 'all')}, page {g(tn, 'page')}, linked {g(tn, 'linked')}"
    )
    return "\n".join(lines)
