"""How far a judge agrees with hand labels (``eval/gold/judge_labels.jsonl``): each line is an
answer sentence from a real answer on a dev question, the context it cites, and a human
``label`` (``supported`` / ``unsupported``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.judges.base import Judge
from eval.stats import cohen_kappa
from rag.config import PROJECT_ROOT
from rag.errors import InvalidInputError

DEFAULT_LABELS = PROJECT_ROOT / "eval" / "gold" / "judge_labels.jsonl"
LABELS = ("supported", "unsupported")


def load_labels(path: Path = DEFAULT_LABELS) -> list[dict[str, Any]]:
    """The labelled sentences; raises InvalidInputError naming the bad line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc
        if (
            row.get("label") not in LABELS
            or not row.get("sentence")
            or not isinstance(row.get("context"), list)
        ):
            raise InvalidInputError(
                f"{path}:{number}: needs sentence, context (list) and label in {LABELS}"
            )
        rows.append(row)
    return rows


def judge_agreement(judge: Judge, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement, Cohen's kappa and the confusion counts of ``judge`` against the labels."""
    if not rows:
        raise InvalidInputError("no labelled sentences")
    scores = judge.support([(r["sentence"], r["context"]) for r in rows])
    predicted = [s >= judge.threshold for s in scores]
    human = [r["label"] == "supported" for r in rows]
    confusion = {
        "both_supported": sum(p and h for p, h in zip(predicted, human, strict=True)),
        "both_unsupported": sum(not p and not h for p, h in zip(predicted, human, strict=True)),
        "judge_only_supported": sum(p and not h for p, h in zip(predicted, human, strict=True)),
        "human_only_supported": sum(h and not p for p, h in zip(predicted, human, strict=True)),
    }
    return {
        "judge": judge.describe(),
        "n": len(rows),
        "human_supported": sum(human),
        "agreement": sum(p == h for p, h in zip(predicted, human, strict=True)) / len(rows),
        "kappa": cohen_kappa(predicted, human),
        "confusion": confusion,
        "disagreements": [
            {"id": r.get("id"), "sentence": r["sentence"], "label": r["label"], "support": s}
            for r, s, p, h in zip(rows, scores, predicted, human, strict=True)
            if p != h
        ],
    }
