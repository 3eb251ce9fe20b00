"""``mlrag eval calibrate``: tune on the DEV split only, report on the held-out TEST split.

1. The abstention threshold (``settings.abstain_threshold``: the best dense similarity between
   the query and any retrieved chunk, see rag.relevance) that maximises abstention accuracy
   minus false-abstention rate on dev.
2. The ``source_boost`` of the user's page (topic ``machine-learning``) that maximises recall
   within 3,000 characters on dev answerable items (page and linked together, since a strong
   boost helps page questions and can hurt linked ones).

The chosen values are printed and recorded in ``calibration.json``; nothing is written into
the configuration (the lead applies them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.gold import PAGE_TOPIC, GoldItem, gold_hash, load_gold, select_split
from eval.metrics import abstention_accuracy, false_abstention_rate
from eval.scoring import score_retrieval
from rag.errors import InvalidInputError

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.pipeline import RAG

DEFAULT_BOOSTS: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.5, 2.0, 2.5, 3.0, 4.0)
HEADLINE = "budget_any@3000"
# Thresholds at which the accuracy / false-abstention trade-off is also reported.
CURVE_THRESHOLDS: tuple[float, ...] = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold with its dev objective and held-out test numbers."""

    threshold: float
    dev_objective: float
    dev_abstention_accuracy: float | None
    dev_false_abstention: float | None
    test_abstention_accuracy: float | None
    test_false_abstention: float | None
    current_threshold: float
    test_abstention_accuracy_current: float | None
    test_false_abstention_current: float | None


def best_similarities(rag: RAG, items: Sequence[GoldItem], retriever: str, k: int) -> list[float]:
    """The best query-to-hit dense similarity per item, exactly as ``RAG.ask`` computes it."""
    from rag.relevance import best_similarity

    sims = []
    for item in items:
        hits = rag.search(item.question, k=k, retriever=retriever)
        vector = rag.embedder.embed_query(item.question)
        sims.append(best_similarity(vector, hits, rag.store) if hits else -1.0)
    return sims


def abstention_rates(
    sims: Sequence[float], answerable: Sequence[bool], threshold: float
) -> tuple[float | None, float | None]:
    """(abstention accuracy, false-abstention rate) when abstaining below ``threshold``."""
    abstain = [s < threshold for s in sims]
    on_unanswerable = [a for a, ok in zip(abstain, answerable, strict=True) if not ok]
    on_answerable = [a for a, ok in zip(abstain, answerable, strict=True) if ok]
    return abstention_accuracy(on_unanswerable), false_abstention_rate(on_answerable)


def objective(accuracy: float | None, false_rate: float | None) -> float:
    """Abstention accuracy minus false-abstention rate (a missing side counts as 0)."""
    return (accuracy or 0.0) - (false_rate or 0.0)


def choose_threshold(sims: Sequence[float], answerable: Sequence[bool]) -> tuple[float, float]:
    """The threshold maximising :func:`objective` and its value. Candidates are the
    midpoints between consecutive distinct similarities (plus one below and one above all);
    among equally good ones the middle candidate is taken, for the widest margin."""
    values = sorted(set(round(s, 6) for s in sims))
    if not values:
        raise InvalidInputError("no similarities to calibrate on")
    candidates = [
        values[0] - 1e-3,
        *((a + b) / 2 for a, b in zip(values, values[1:], strict=False)),
        values[-1] + 1e-3,
    ]
    scored = [(objective(*abstention_rates(sims, answerable, t)), t) for t in candidates]
    best = max(score for score, _ in scored)
    tied = [t for score, t in scored if abs(score - best) < 1e-12]
    return round(tied[len(tied) // 2], 4), best


def calibrate_threshold(
    rag: RAG, dev: Sequence[GoldItem], test: Sequence[GoldItem], retriever: str, k: int
) -> tuple[ThresholdChoice, dict[str, Any]]:
    """Choose the threshold on ``dev`` and measure it (and the current one) on ``test``."""
    dev_sims = best_similarities(rag, dev, retriever, k)
    dev_ok = [i.answerable for i in dev]
    if all(dev_ok):
        raise InvalidInputError(
            "the dev split has no unanswerable items: cannot calibrate abstention"
        )
    threshold, best = choose_threshold(dev_sims, dev_ok)
    dev_acc, dev_false = abstention_rates(dev_sims, dev_ok, threshold)
    test_sims = best_similarities(rag, test, retriever, k)
    test_ok = [i.answerable for i in test]
    test_acc, test_false = abstention_rates(test_sims, test_ok, threshold) if test else (None, None)
    current = rag.settings.abstain_threshold
    cur_acc, cur_false = abstention_rates(test_sims, test_ok, current) if test else (None, None)
    choice = ThresholdChoice(
        threshold, best, dev_acc, dev_false, test_acc, test_false, current, cur_acc, cur_false
    )
    curve = [
        {
            "threshold": t,
            "dev": abstention_rates(dev_sims, dev_ok, t),
            "test": abstention_rates(test_sims, test_ok, t) if test else (None, None),
        }
        for t in CURVE_THRESHOLDS
    ]
    detail = {
        "curve": curve,
        "dev": [{"id": i.id, "answerable": i.answerable, "best_similarity": s} for i, s in zip(dev, dev_sims, strict=True)],
        "test": [{"id": i.id, "answerable": i.answerable, "best_similarity": s} for i, s in zip(test, test_sims, strict=True)],
    }  # fmt: skip
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
) -> dict[str, Any]:
    """Calibrate the abstention threshold and the page boost on dev, report test."""
    from rag.pipeline import RAG

    rag = rag or RAG(settings)
    items = load_gold(gold)
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
        choice, detail = calibrate_threshold(rag, dev, test, retriever, k)
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
            f"abstain_threshold = {t['threshold']:.4f}  (dev: accuracy {f(t['dev_abstention_accuracy'])}, "
            f"false abstention {f(t['dev_false_abstention'])})"
        )
        lines.append(
            f"  test with {t['threshold']:.4f}: accuracy {f(t['test_abstention_accuracy'])}, false abstention "
            f"{f(t['test_false_abstention'])}; with current {t['current_threshold']}: accuracy "
            f"{f(t['test_abstention_accuracy_current'])}, false abstention {f(t['test_false_abstention_current'])}"
        )
    curve = result.get("similarities", {}).get("curve", [])
    if curve:
        lines.append(
            "  trade-off (threshold: dev accuracy/false abstention | test accuracy/false abstention):"
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
