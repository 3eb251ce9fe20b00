"""HTTP service benchmark: starts ``mlrag``'s API on loopback over an ingested data dir and
drives ``/v1/search`` and ``/v1/ask`` (extractive) at several concurrency levels.

    .venv/bin/python bench/api.py [--data-dir data] [--concurrency 1 8 32] [--requests 200]

The server runs in its own process (uvicorn, one worker), so the load generator does not
share its interpreter. Every request uses a different question, so the query-embedding cache
does not hide the embedding cost. Reports requests/s, p50/p95/p99 latency and errors per
level; below saturation there must be no errors, above it only 503s (capacity refusals).
Writes ``bench/results/api.json`` and prints a Markdown table.
Targets: /v1/search p50 <= 30 ms at concurrency 1 and >= 100 req/s at concurrency 8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"
TARGETS = {"search_p50_ms_c1": 30.0, "search_rps_c8": 100.0}

TOPICS = [
    "gradient descent",
    "overfitting",
    "dropout",
    "batch normalization",
    "cross-validation",
    "random forests",
    "gradient boosting",
    "logistic regression",
    "support vector machines",
    "k-means clustering",
    "principal component analysis",
    "word embeddings",
    "attention",
    "transformers",
    "convolutional neural networks",
    "recurrent neural networks",
    "LSTMs",
    "backpropagation",
    "learning rate schedules",
    "weight decay",
    "early stopping",
    "data augmentation",
    "transfer learning",
    "fine-tuning",
    "tokenization",
    "autograd",
    "tensors",
    "broadcasting",
    "sparse matrices",
    "decision trees",
    "naive Bayes",
    "hyperparameter search",
    "the bias-variance trade-off",
    "precision and recall",
    "ROC curves",
    "confusion matrices",
    "feature scaling",
    "one-hot encoding",
    "the softmax function",
    "cross-entropy loss",
    "the Adam optimizer",
    "mixed precision",
    "GPU training",
    "dataloaders",
    "model checkpoints",
    "quantization",
    "LoRA",
    "reinforcement learning",
    "Q-learning",
    "generative adversarial networks",
]
TEMPLATES = [
    "What is {}?",
    "How does {} work?",
    "When should I use {}?",
    "What are the drawbacks of {}?",
    "Explain {} with an example.",
]


def questions(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct questions (distinct strings, so nothing is served from a cache)."""
    pool = [t.format(topic) for t in TEMPLATES for topic in TOPICS]
    out = []
    for i in range(n):
        j = offset + i
        base = pool[j % len(pool)]
        out.append(base if j < len(pool) else f"{base} (case {j // len(pool)})")
    return out


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int, threads: int) -> subprocess.Popen[bytes]:
    """The API in a uvicorn subprocess, configured through MLRAG_* variables."""
    env = {
        **os.environ,
        "MLRAG_DATA_DIR": str(data_dir),
        "MLRAG_GENERATOR": "extractive",
        "MLRAG_TORCH_THREADS": str(threads),
        "MLRAG_RATE_LIMIT_PER_MINUTE": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Seconds until ``/ready`` answers 200 (raises when the server dies or times out)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise SystemExit(f"server exited with status {process.returncode}")
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(
        f"server not ready after {timeout_s:.0f} s (is {base} serving an ingested data dir?)"
    )


async def drive(
    base: str, path: str, bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    """Send every body to ``path`` with ``concurrency`` workers; latency and status stats."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    transport_errors = 0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal transport_errors
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await client.post(path, json=body)
                    statuses[response.status_code] += 1
                except httpx.HTTPError:
                    transport_errors += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started

    ok = [s for s in statuses.elements() if s == 200]
    lat = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    errors = sum(n for s, n in statuses.items() if s != 200) + transport_errors
    return {
        "path": path,
        "concurrency": concurrency,
        "requests": len(bodies),
        "ok": len(ok),
        "wall_s": round(wall, 3),
        "rps": round(len(bodies) / wall, 2),
        "ok_rps": round(len(ok) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "errors": errors,
        "errors_other_than_503": errors - statuses.get(503, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": transport_errors,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| route | concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | errors (non-503) | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['path']} | {r['concurrency']} | {r['requests']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} "
            f"| {r['p99_ms']} | {r['errors']} ({r['errors_other_than_503']}) | {r['statuses']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results file."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=200, help="search requests per level")
    parser.add_argument("--ask-requests", type=int, default=64, help="ask requests per level")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--ready-timeout", type=float, default=300)
    parser.add_argument(
        "--query-pool",
        type=int,
        default=0,
        help="cycle through this many questions (warmed first, so embeddings come from the "
        "server's query cache: measures the HTTP/retrieval path without embedding); 0 = every "
        "request distinct",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(args.data_dir.resolve(), port, args.threads)
    try:
        ready_s = wait_ready(base, process, args.ready_timeout)
        sources = httpx.get(base + "/v1/sources", timeout=60).json()
        rows = []
        offset = 0
        for path, n in (("/v1/search", args.requests), ("/v1/ask", args.ask_requests)):
            key = "query" if path == "/v1/search" else "question"
            extra = {} if path == "/v1/search" else {"generator": "extractive"}
            if args.query_pool:
                pool = questions(args.query_pool)
                warm = [{key: q, **extra} for q in pool]
            else:
                warm = [{key: q, **extra} for q in questions(5, offset=10_000 + offset)]
            asyncio.run(drive(base, path, warm, 1))  # threads and caches warm, not measured
            for concurrency in args.concurrency:
                if args.query_pool:
                    bodies = [{key: pool[i % len(pool)], **extra} for i in range(n)]
                else:
                    bodies = [{key: q, **extra} for q in questions(n, offset)]
                    offset += n
                row = asyncio.run(drive(base, path, bodies, concurrency))
                rows.append(row)
                print(
                    f"{path} c={concurrency}: {row['rps']} req/s p50 {row['p50_ms']} ms statuses {row['statuses']}",
                    file=sys.stderr,
                )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()

    by = {(r["path"], r["concurrency"]): r for r in rows}
    checks = {}
    if ("/v1/search", 1) in by:
        checks["search_p50_ms_c1"] = {
            "value": by[("/v1/search", 1)]["p50_ms"],
            "target": f"<= {TARGETS['search_p50_ms_c1']}",
            "met": by[("/v1/search", 1)]["p50_ms"] <= TARGETS["search_p50_ms_c1"],
        }
    if ("/v1/search", 8) in by:
        checks["search_rps_c8"] = {
            "value": by[("/v1/search", 8)]["rps"],
            "target": f">= {TARGETS['search_rps_c8']}",
            "met": by[("/v1/search", 8)]["rps"] >= TARGETS["search_rps_c8"],
        }
    checks["only_503_errors"] = {"met": all(r["errors_other_than_503"] == 0 for r in rows)}
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": args.threads,
        },
        "data_dir": str(args.data_dir),
        "corpus": {
            "documents": sources.get("total_documents"),
            "chunks": sources.get("total_chunks"),
        },
        "server_ready_s": round(ready_s, 1),
        "queries": f"pool of {args.query_pool} (cached embeddings)"
        if args.query_pool
        else "all distinct",
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "settings": {
            "generator": "extractive",
            "retriever": Settings.model_fields["retriever"].default,
            "max_concurrent_generations": Settings.model_fields[
                "max_concurrent_generations"
            ].default,
            "max_queued_generations": Settings.model_fields["max_queued_generations"].default,
        },
        "rows": rows,
        "checks": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(rows))
    print()
    for name, check in checks.items():
        print(f"- {name}: {check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
