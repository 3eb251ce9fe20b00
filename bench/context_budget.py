"""Evidence in the context at each LLM context budget (rag.context), on the DEV split only.

For every answerable dev item (gold.jsonl + hard.jsonl), retrieve as the pipeline does
(hybrid, k=5, follow-ups condensed), cut the hits to each budget, and check whether a gold
evidence quote survives in the cut context. It reports the smallest budget that keeps the
evidence as often as the whole chunks (within --tolerance) and the configured budget
(``llm_context_tokens``), which trades some evidence for prefill time on 2 CPU cores.

    python bench/context_budget.py [--budgets 80,120,...] [--tolerance 0.02]

Writes bench/results/context_budget.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.gold import load_gold, select_split  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.context import compress_hits, estimate_tokens, rank_sentences  # noqa: E402
from rag.pipeline import RAG  # noqa: E402
from rag.qa import contains_quote  # noqa: E402
from rag.request import AskRequest  # noqa: E402

DEFAULT_BUDGETS = (60, 100, 140, 180, 220, 260, 300, 400, 600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)))
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    gold = [ROOT / "eval/gold/gold.jsonl", ROOT / "eval/gold/hard.jsonl"]
    items = [i for i in select_split(load_gold(gold), "dev") if i.answerable and i.evidence]
    rag = RAG(Settings(generator="extractive", answer_cache_size=0))
    found = {b: 0 for b in [*budgets, 0]}
    tokens = {b: 0 for b in [*budgets, 0]}
    started = time.perf_counter()
    for item in items:
        valid = rag.validate(AskRequest(item.question, k=args.k, history=tuple(item.turns())))
        retrieval = rag.retrieve(valid)
        ranked = rank_sentences(retrieval.query, retrieval.hits, rag.embedder, rag.shared.sentences)
        for budget in [*budgets, 0]:
            hits = compress_hits(retrieval.hits, ranked, budget) if budget else retrieval.hits
            text = "\n".join(h.chunk.text for h in hits)
            tokens[budget] += sum(estimate_tokens(h.chunk.text) for h in hits)
            if any(contains_quote(text, q) for q in item.evidence):
                found[budget] += 1
    n = len(items)
    whole = found[0] / n
    rows = [
        {
            "budget_tokens": b or "whole chunks",
            "evidence_in_context": round(found[b] / n, 3),
            "mean_context_tokens": round(tokens[b] / n, 1),
        }
        for b in [*budgets, 0]
    ]
    chosen = next((b for b in budgets if found[b] / n >= whole - args.tolerance), 0)
    configured = Settings().llm_context_tokens
    result = {
        "split": "dev",
        "items": n,
        "k": args.k,
        "tolerance": args.tolerance,
        "smallest_budget_within_tolerance": chosen or "none (whole chunks)",
        "configured_llm_context_tokens": configured,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = ROOT / "bench/results/context_budget.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| budget (tokens) | evidence in context | mean context tokens |")
    print("|---|---|---|")
    for row in rows:
        print(
            f"| {row['budget_tokens']} | {row['evidence_in_context']:.2f} | "
            f"{row['mean_context_tokens']} |"
        )
    print(
        f"\nsmallest budget within {args.tolerance} of whole chunks ({whole:.2f}): "
        f"{chosen or 'none'}; configured llm_context_tokens: {configured}"
    )


if __name__ == "__main__":
    main()
