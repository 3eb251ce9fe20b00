"""Answer latency on this machine: the offline default generator (the 1.5B model on llama.cpp
when installed) streamed, beside the extractive answerer, on the same questions.

    python bench/answer_latency.py [--n 12] [--split dev]

For each question (answerable dev items, typed and follow-ups included; follow-ups with their
history), one streamed answer: time to first token, total time, and llama.cpp's decode speed;
then the extractive answer's time. Reports medians (p50) and p90, writes
bench/results/answer_latency.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.gold import load_gold, select_split  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.pipeline import RAG  # noqa: E402
from rag.request import AskRequest  # noqa: E402
from rag.types import AnswerEvent, TokenEvent  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--generator", default="auto")
    args = parser.parse_args()
    gold = [ROOT / "eval/gold/gold.jsonl", ROOT / "eval/gold/hard.jsonl"]
    items = [i for i in select_split(load_gold(gold), args.split) if i.answerable]
    step = max(1, len(items) // args.n)
    items = items[::step][: args.n]
    rag = RAG(Settings(answer_cache_size=0))
    generator = rag.validate(AskRequest("warm up", generator=args.generator)).generator
    rag.warm_up(generators=("extractive", generator))
    rag.ask(AskRequest("What is dropout?", generator=generator))  # load, fill the prompt cache
    first, total, decode, prefill, extractive = [], [], [], [], []
    abstained = 0
    for item in items:
        request = AskRequest(item.question, generator=generator, history=tuple(item.turns()))
        started = time.perf_counter()
        first_token = None
        answer = None
        for event in rag.stream(request):
            if isinstance(event, TokenEvent) and first_token is None:
                first_token = time.perf_counter() - started
            if isinstance(event, AnswerEvent):
                answer = event.answer
        total.append(time.perf_counter() - started)
        first.append(first_token if first_token is not None else total[-1])
        assert answer is not None
        abstained += answer.abstained
        timings = answer.timings_ms
        if timings.get("decode_tokens") and timings.get("decode"):
            decode.append(timings["decode_tokens"] / (timings["decode"] / 1000))
        if timings.get("prefill_tokens") and timings.get("prefill"):
            prefill.append(timings["prefill_tokens"] / (timings["prefill"] / 1000))
        started = time.perf_counter()
        rag.ask(AskRequest(item.question, generator="extractive", history=tuple(item.turns())))
        extractive.append((time.perf_counter() - started) * 1000)
    result = {
        "generator": generator,
        "questions": len(items),
        "split": args.split,
        "answer_s_p50": pct(total, 0.5) if total else None,
        "answer_s_p90": pct(total, 0.9) if total else None,
        "first_token_s_p50": pct(first, 0.5) if first else None,
        "first_token_s_p90": pct(first, 0.9) if first else None,
        "decode_tokens_per_s_p50": round(statistics.median(decode), 1) if decode else None,
        "prefill_tokens_per_s_p50": round(statistics.median(prefill), 1) if prefill else None,
        "abstained": abstained,
        "extractive_ms_p50": pct(extractive, 0.5),
        "extractive_ms_p90": pct(extractive, 0.9),
    }
    (ROOT / "bench/results/answer_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
