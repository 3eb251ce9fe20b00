"""Calibrate ``answer_support_floor`` on a DEV-split eval run: for each floor, the share of
answerable items declined, of unanswerable items declined, and of answerable items whose answer
carries the evidence, had answers whose best sentence support is below the floor been declined.

    mlrag eval run --gold eval/gold/gold.jsonl eval/gold/hard.jsonl --retrievers hybrid \\
        --generators local --split dev --out runs/dev-qwen-1
    python bench/answer_floor.py runs/dev-qwen-1 [--config hybrid/local]

Picks the floor with the best (unanswerable declined - answerable declined); writes
bench/results/answer_floor.json. Never run it on the test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def best_support(record: dict) -> float:
    scores = [s["support"] for s in record.get("sentences", []) if s.get("support") is not None]
    return max(scores, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--config", default="hybrid/local")
    args = parser.parse_args()
    results = json.loads((args.run / "results.json").read_text())
    if results["run"].get("split") not in (None, "dev"):
        raise SystemExit("calibrate on the dev split only")
    records = results["answers"]["per_question"][args.config]["records"]
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if r["answerable"] is False]
    rows = []
    for floor in FLOORS:

        def declined(r: dict, floor: float = floor) -> bool:
            return r["abstained"] or best_support(r) < floor

        rows.append(
            {
                "floor": floor,
                "answerable_declined": round(sum(map(declined, answerable)) / len(answerable), 3),
                "unanswerable_declined": round(
                    sum(map(declined, unanswerable)) / len(unanswerable), 3
                ),
                "evidence_in_answer": round(
                    sum(1 for r in answerable if not declined(r) and r["evidence_in_answer"])
                    / len(answerable),
                    3,
                ),
            }
        )
    best = max(
        rows, key=lambda r: (r["unanswerable_declined"] - r["answerable_declined"], -r["floor"])
    )
    out = {"run": str(args.run), "config": args.config, "rows": rows, "chosen": best["floor"]}
    (ROOT / "bench/results/answer_floor.json").write_text(json.dumps(out, indent=2) + "\n")
    print("| floor | answerable declined | unanswerable declined | evidence in answer |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['floor']} | {r['answerable_declined']} | {r['unanswerable_declined']} | "
            f"{r['evidence_in_answer']} |"
        )
    print(f"\nchosen floor: {best['floor']}")


if __name__ == "__main__":
    main()
