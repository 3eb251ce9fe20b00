"""Retrieval latency benchmark: p50/p95 per retriever on the ingested corpus and on a
synthetic 100k-chunk collection.

    .venv/bin/python bench/retrieval.py [--data-dir data] [--size 100000] [--queries 60]

"fresh" queries are new strings every time (the query-embedding cache cannot hide the
embedding cost); "cached" repeats them (embedding served from the cache). The synthetic
collection (random unit vectors + random words) is cached under ``<data-dir>/bench/`` keyed
by size. Writes ``bench/results/retrieval.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.lexical import LexicalIndex, lexical_index_dir  # noqa: E402
from rag.retrieval.mmr import fetch_embeddings  # noqa: E402
from rag.retrieval.registry import RetrievalContext, build_retriever  # noqa: E402
from rag.store import ChunkStore, corpus_version_of  # noqa: E402
from rag.types import Chunk  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"
TARGETS_P50_MS = {("corpus", "hybrid"): 25.0, ("synthetic", "hybrid"): 60.0}
SYNTHETIC_TOPICS = ("pytorch", "numpy", "scikit-learn", "huggingface", "machine-learning")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values), q))


def time_queries(search: Callable[[str], Any], queries: list[str]) -> list[float]:
    """Milliseconds per call of ``search`` for each query."""
    timings = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def bench_retrievers(
    ctx: RetrievalContext, names: list[str], fresh: Callable[[int], list[str]], n: int, k: int
) -> list[dict[str, Any]]:
    """Fresh and cached p50/p95 for each retriever over ``n`` queries."""
    rows = []
    for name in names:
        retriever = build_retriever(name, ctx)
        for warm in fresh(3):
            retriever.search(warm, k)
        queries = fresh(n)
        fresh_ms = time_queries(lambda q, r=retriever: r.search(q, k), queries)
        cached_ms = time_queries(lambda q, r=retriever: r.search(q, k), queries)
        rows.append(
            {
                "retriever": name,
                "queries": n,
                "k": k,
                "fresh_p50_ms": round(percentile(fresh_ms, 50), 2),
                "fresh_p95_ms": round(percentile(fresh_ms, 95), 2),
                "cached_p50_ms": round(percentile(cached_ms, 50), 2),
                "cached_p95_ms": round(percentile(cached_ms, 95), 2),
            }
        )
        print(
            f"  {name}: fresh p50 {rows[-1]['fresh_p50_ms']} ms, cached p50 {rows[-1]['cached_p50_ms']} ms",
            flush=True,
        )
    return rows


def bench_mmr_embeddings(
    ctx: RetrievalContext, n_candidates: int = 20, repeats: int = 5
) -> dict[str, float]:
    """MMR needs candidate embeddings: fetching them from Chroma vs re-embedding the texts."""
    chunks = list(ctx.store.get_chunks(ctx.store.all_ids()[:n_candidates]))
    ids = [c.id for c in chunks]
    fetch = time_queries(lambda _: fetch_embeddings(ctx.store, ids), ["x"] * repeats)
    embed = time_queries(
        lambda _: ctx.embedder.embed_documents([c.indexed_text for c in chunks]), ["x"]
    )
    return {
        "candidates": len(ids),
        "fetch_p50_ms": round(statistics.median(fetch), 2),
        "reembed_ms": round(embed[0], 1),
    }


def corpus_queries(chunks: list[Chunk], seed: int) -> Callable[[int], list[str]]:
    """A source of never-repeated queries: random 5-9 word windows of chunk texts."""
    rng = random.Random(seed)
    used: set[str] = set()

    def make(n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            words = rng.choice(chunks).text.split()
            size = rng.randint(5, 9)
            start = rng.randint(0, max(0, len(words) - size))
            query = " ".join(words[start : start + size])
            if query and query not in used:
                used.add(query)
                out.append(query)
        return out

    return make


def make_vocabulary(size: int, rng: random.Random) -> list[str]:
    """Distinct pronounceable pseudo-words."""
    consonants, vowels = "bcdfghjklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.randint(2, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


def synthetic_store(
    base_dir: Path, size: int, embedder: Embedder, threads: int
) -> tuple[Settings, ChunkStore, dict[str, float]]:
    """The cached synthetic collection of ``size`` chunks (built on first use)."""
    settings = Settings(
        data_dir=base_dir / f"synthetic-{size}", collection="synthetic", torch_threads=threads
    )
    store = ChunkStore.from_settings(settings, embedder)
    timings: dict[str, float] = {}
    if store.count() == size and store.corpus_version():
        return settings, store, timings
    print(f"building synthetic collection of {size} chunks in {settings.data_dir} ...", flush=True)
    started = time.perf_counter()
    rng = random.Random(1234)
    np_rng = np.random.default_rng(1234)
    vocab = make_vocabulary(20_000, rng)
    # Zipf-like word frequencies make posting lists as skewed as in real text.
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    weights /= weights.sum()
    batch = min(5000, int(store.client.get_max_batch_size()))
    for start in range(store.count(), size, batch):
        n = min(batch, size - start)
        word_ids = np_rng.choice(len(vocab), size=(n, 100), p=weights)
        vectors = np_rng.standard_normal((n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        chunks = [
            Chunk(
                id=f"syn-{start + i}",
                doc_id=f"syn-doc-{(start + i) // 20}",
                text=" ".join(vocab[j] for j in word_ids[i]),
                section=f"section {(start + i) % 7}",
                position=(start + i) % 20,
                metadata={
                    "title": f"Synthetic document {(start + i) // 20}",
                    "topic": SYNTHETIC_TOPICS[(start + i) % len(SYNTHETIC_TOPICS)],
                    "source": f"synthetic/{(start + i) // 20}",
                    "url": "",
                },
            )
            for i in range(n)
        ]
        store.upsert(chunks, vectors)
        print(f"  {start + n}/{size}", flush=True)
    store.set_corpus_version(corpus_version_of(store.all_ids()))
    timings["collection_build_s"] = round(time.perf_counter() - started, 1)
    return settings, store, timings


def synthetic_queries(seed: int) -> Callable[[int], list[str]]:
    """Never-repeated 5-word queries from the synthetic vocabulary (2 frequent, 3 rarer words)."""
    vocab = make_vocabulary(20_000, random.Random(1234))
    rng = random.Random(seed)
    used: set[str] = set()

    def make(n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            # Two frequent words (long posting lists, like "model" or "data") and three rarer ones.
            words = [rng.choice(vocab[:200]) for _ in range(2)] + [
                rng.choice(vocab[200:5000]) for _ in range(3)
            ]
            query = " ".join(words)
            if query not in used:
                used.add(query)
                out.append(query)
        return out

    return make


def lexical_timings(store: ChunkStore, settings: Settings) -> tuple[LexicalIndex, dict[str, float]]:
    """Load-or-build the lexical index, and time a load from disk."""
    started = time.perf_counter()
    index = LexicalIndex.load_or_build(store, lexical_index_dir(settings))
    first = time.perf_counter() - started
    started = time.perf_counter()
    LexicalIndex.load_or_build(store, lexical_index_dir(settings))
    return index, {
        "lexical_first_s": round(first, 2),
        "lexical_load_s": round(time.perf_counter() - started, 2),
    }


def run_section(
    label: str,
    settings: Settings,
    store: ChunkStore,
    embedder: Embedder,
    queries: Callable[[int], list[str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Benchmark every retriever over one store."""
    index, timings = lexical_timings(store, settings)
    ctx = RetrievalContext(settings=settings, embedder=embedder, store=store, lexical=index)
    names = ["dense", "bm25", "hybrid"]
    if settings.reranker_model:
        names += ["dense+rerank", "bm25+rerank", "hybrid+rerank"]
    print(f"{label}: {store.count()} chunks", flush=True)
    embed_ms = time_queries(lambda q: embedder.embed_documents([q]), queries(args.queries))
    timings["embed_query_p50_ms"] = round(percentile(embed_ms, 50), 2)
    timings["embed_query_p95_ms"] = round(percentile(embed_ms, 95), 2)
    rows = bench_retrievers(ctx, names, queries, args.queries, args.k)
    for row in rows:
        target = TARGETS_P50_MS.get((label, row["retriever"]))
        if target is not None:
            row["target_p50_ms"] = target
            row["meets_target"] = row["fresh_p50_ms"] <= target
    return {
        "chunks": store.count(),
        **timings,
        "mmr_embeddings": bench_mmr_embeddings(ctx),
        "rows": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| collection | chunks | retriever | fresh p50 ms | fresh p95 ms | cached p50 ms | cached p95 ms | target p50 |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for label, section in results["sections"].items():
        for row in section.get("rows", []):
            target = row.get("target_p50_ms")
            verdict = (
                "" if target is None else f"≤ {target:g} {'✅' if row['meets_target'] else '❌'}"
            )
            lines.append(
                f"| {label} | {section['chunks']} | {row['retriever']} | {row['fresh_p50_ms']} | "
                f"{row['fresh_p95_ms']} | {row['cached_p50_ms']} | {row['cached_p95_ms']} | {verdict} |"
            )
    for label, section in results["sections"].items():
        if "embed_query_p50_ms" in section:
            lines.append(
                f"\n{label}: query embedding alone (uncached) p50 {section['embed_query_p50_ms']} ms, "
                f"p95 {section['embed_query_p95_ms']} ms"
            )
    lines.append(f"\nload average during the run: {results['machine']['loadavg_after']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="data dir of the ingested corpus"
    )
    parser.add_argument("--size", type=int, default=100_000, help="synthetic collection size")
    parser.add_argument("--queries", type=int, default=60, help="queries per retriever")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0 = all cores; 1 is faster on a busy 2-core machine)",
    )
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    settings = Settings(data_dir=args.data_dir, torch_threads=args.threads)
    embedder = Embedder.from_settings(settings)
    embedder.embed_query("warm up the model")
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "torch_threads": settings.effective_threads(),
        },
        "sections": {},
    }
    if not args.skip_corpus:
        store = ChunkStore.from_settings(settings, embedder)
        if store.count() == 0:
            print(f"corpus: nothing ingested in {args.data_dir}; skipped", flush=True)
            results["sections"]["corpus"] = {
                "chunks": 0,
                "skipped": f"nothing ingested in {args.data_dir}",
            }
        else:
            chunks = list(store.iter_chunks())
            results["sections"]["corpus"] = run_section(
                "corpus", settings, store, embedder, corpus_queries(chunks, 7), args
            )
    if not args.skip_synthetic:
        syn_settings, syn_store, build = synthetic_store(
            args.data_dir / "bench", args.size, embedder, args.threads
        )
        section = run_section(
            "synthetic", syn_settings, syn_store, embedder, synthetic_queries(11), args
        )
        results["sections"]["synthetic"] = {**build, **section}
    results["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(markdown(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
