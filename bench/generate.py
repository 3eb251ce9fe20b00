"""Answer-generation benchmark: latency and groundedness of each generator over a fixed
question set, on an ingested data dir.

    .venv/bin/python bench/generate.py [--data-dir data] [--generators extractive] [--k 5]
                                       [--retriever hybrid] [--limit N]

For every question the context is retrieved once (retrieval is not timed here); then each
generator answers it twice: *cold* (the first time its sentences/chunks are seen, so the
extractive generator embeds candidate sentences) and *warm* (caches filled). The full
pipeline (``RAG.ask``: retrieval, generation, citations, grounding) is timed warm as well.
Reports p50/p95 in ms, abstentions, sentences per answer and the share of answer sentences
whose support is above ``settings.support_threshold``. Writes
``bench/results/generate.json`` (one entry per generator, merged with earlier runs) and
prints a Markdown table. Target: extractive p50 well under 100 ms for k=5 (warm).

Adding a generator: pass its registry name in ``--generators``; ``DEFAULT_LIMITS`` caps the
questions of slow ones (the local LLM takes seconds per answer).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "generate.json"

QUESTIONS = [
    "What is backpropagation?",
    "When should I use PR-AUC instead of ROC-AUC?",
    "What is the bias-variance tradeoff?",
    "How does gradient descent work?",
    "What is overfitting and how do I prevent it?",
    "What is a transformer in NLP?",
    "What is reinforcement learning?",
    "Who coined the term artificial intelligence?",
    "What is a convolutional neural network used for?",
    "How do I create a tensor in PyTorch?",
    "What is a random forest?",
    "How do I deploy a model to production?",
    "What is cross-validation?",
    "How does attention work?",
    "What does the LoRA rank r control?",
    "How do I tokenize text with NLTK?",
    "What is dropout?",
    "How do I read a CSV file with pandas?",
    "What is broadcasting in NumPy?",
    "How do I plot a distribution with seaborn?",
]
# Questions per generator when --limit is not given (None: all).
DEFAULT_LIMITS: dict[str, int | None] = {"extractive": None, "local": 5, "claude": 5}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2)}


def bench_generator(
    rag: Any, name: str, questions: list[str], k: int, retriever: str
) -> dict[str, Any]:
    """Cold and warm generation latency, pipeline latency and groundedness of one generator."""
    from rag.abstention import is_decline as is_abstention
    from rag.citations import clean_markers
    from rag.grounding import assess

    generator = rag.generator(name)
    contexts = {q: rag.search(q, k=k, retriever=retriever) for q in questions}
    cold, warm, pipeline = [], [], []
    abstained, sentences, supported = 0, 0, 0
    for question in questions:
        started = time.perf_counter()
        answer = generator.generate(question, contexts[question])
        cold.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        generator.generate(question, contexts[question])
        warm.append((time.perf_counter() - started) * 1000)
        if answer.abstained or is_abstention(answer.text):
            abstained += 1
        else:
            text, _ = clean_markers(answer.text, len(contexts[question]))
            grounding = assess(
                text,
                contexts[question],
                rag.embedder,
                rag.settings.support_threshold,
                rag.shared.sentences,
            )
            sentences += len(grounding.support)
            supported += sum(s >= rag.settings.support_threshold for s in grounding.support)
        pipeline.append(
            rag.ask(question, k=k, retriever=retriever, generator=name).timings_ms["total"]
        )
    return {
        "questions": len(questions),
        "k": k,
        "retriever": retriever,
        "generate_cold_ms": _ms(cold),
        "generate_warm_ms": _ms(warm),
        "ask_total_warm_ms": _ms(pipeline),
        "abstained": abstained,
        "sentences_per_answer": round(sentences / max(1, len(questions) - abstained), 2),
        "supported_sentence_share": round(supported / sentences, 3) if sentences else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="ingested data dir (default: settings)"
    )
    parser.add_argument("--generators", nargs="+", default=["extractive"])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--retriever", default="hybrid")
    parser.add_argument("--limit", type=int, default=None, help="questions per generator")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from rag.pipeline import RAG

    overrides: dict[str, Any] = {"torch_threads": 1}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = Settings(**overrides)
    rag = RAG.from_settings(settings)
    if not rag.is_ready():
        print(
            f"the index in {settings.data_dir} is empty: run `mlrag ingest` first", file=sys.stderr
        )
        return 1
    rag.warm_up(retrievers=(args.retriever,), generators=tuple(args.generators))
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.generators:
        limit = args.limit if args.limit is not None else DEFAULT_LIMITS.get(name)
        questions = QUESTIONS[:limit] if limit else QUESTIONS
        entry = bench_generator(rag, name, questions, args.k, args.retriever)
        entry["environment"] = {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": settings.torch_threads,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "chunks_indexed": rag.store.count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        results[name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        "| generator | n | cold p50 / p95 ms | warm p50 / p95 ms | ask warm p50 ms | abstained | supported |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.generators:
        r = results[name]
        print(
            f"| {name} | {r['questions']} | {r['generate_cold_ms']['p50']} / {r['generate_cold_ms']['p95']} "
            f"| {r['generate_warm_ms']['p50']} / {r['generate_warm_ms']['p95']} | {r['ask_total_warm_ms']['p50']} "
            f"| {r['abstained']} | {r['supported_sentence_share']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
