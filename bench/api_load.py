"""``/v1/search`` throughput measured with ``wrk`` (a standard load generator in C, so the
client costs little of the two cores the server runs on), side by side in one run for:

* ``embedded-1w``: ``mlrag serve --workers 1`` on the embedded store of ``--data-dir``;
* ``server-1w`` / ``server-2w``: ``mlrag serve --workers 1`` / ``2`` on a ``chroma run``
  server holding the same chunks and embeddings.

    .venv/bin/python bench/api_load.py [--duration 10] [--concurrency 1 8 32]

The Chroma server's store (``--server-dir``, default ``data/chroma-bench-server``) is filled
once by copying the embedded collection's records (chunks and embeddings, no re-embedding);
later runs reuse it while its corpus version matches the embedded store's. Every wrk run
sends questions never sent before (each request a new one until the run's list is used up;
the report says when a list wrapped and repeats hit the query cache), so the query embedding
is part of every request. Needs ``wrk`` (``apt-get install wrk``). Binds 127.0.0.1 only and
stops every process it started. Writes ``bench/results/api_load.json`` and prints a
Markdown table with the targets: ``/v1/search`` >= 150 req/s with p99 <= 150 ms at
concurrency 8, and p50 <= 15 ms at concurrency 1 (1 worker, embedded store).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The repository root first: bench/ (this script's folder, put on sys.path by Python) holds
# an api.py that would otherwise shadow the project's api package.
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.api import free_port, questions  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "api_load.json"
LUA = ROOT / "bench" / "wrk_search.lua"
VENV_BIN = Path(sys.executable).parent
TARGETS = {"rps_c8": 150.0, "p99_ms_c8": 150.0, "p50_ms_c1": 15.0}
TARGET_CONFIG = "embedded-1w"
COPY_PAGE = 500  # records per read/upsert when filling the server (bounded HTTP bodies)
MAX_RPS = 400  # sizes each run's question list: duration x this many distinct questions


class BenchError(RuntimeError):
    """The benchmark cannot run (missing tool, a server that does not start)."""


# --- wrk output -------------------------------------------------------------------------------

_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_DURATION = re.compile(
    r"^\s*(\d+)\s+requests in\s+([\d.]+)(us|ms|s|m|h),\s+([\d.]+)([KMGT]?B) read"
)
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$")
_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.IGNORECASE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_LUA_LINE = re.compile(r"^mlrag-wrk (.*)$", re.MULTILINE)


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """The numbers of one ``wrk --latency`` run (with or without bench/wrk_search.lua's
    ``mlrag-wrk`` line): requests, duration, req/s, latency percentiles in ms, non-2xx/3xx
    responses, socket errors and, from the Lua line, p95 and how often question lists
    wrapped. Raises :class:`ValueError` when the output has no summary (wrk failed)."""
    rps = _RPS.search(output)
    totals = next((m for m in map(_DURATION.match, output.splitlines()) if m), None)
    if rps is None or totals is None:
        raise ValueError(f"no wrk summary in the output:\n{output[-2000:]}")
    percentiles: dict[str, float] = {}
    lines = iter(output.splitlines())
    for line in lines:
        if line.strip() == "Latency Distribution":
            # The distribution is the run of percentile lines right after its heading.
            for row in lines:
                match = _PERCENTILE.match(row)
                if match is None:
                    break
                key = f"p{match.group(1).removesuffix('.000').removesuffix('.00')}_ms"
                percentiles[key] = round(_ms(match.group(2), match.group(3)), 3)
            break
    socket = _SOCKET.search(output)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups()), strict=True))
        if socket
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    non_2xx = _NON_2XX.search(output)
    result: dict[str, Any] = {
        "requests": int(totals.group(1)),
        "duration_s": round(_ms(totals.group(2), totals.group(3)) / 1000, 3),
        "read_bytes": int(float(totals.group(4)) * _SIZE_UNITS[totals.group(5)]),
        "rps": float(rps.group(1)),
        **percentiles,
        "non_2xx_3xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors,
    }
    lua = _LUA_LINE.search(output)
    if lua is not None:
        fields = dict(item.split("=", 1) for item in lua.group(1).split())
        for name in ("p50", "p90", "p95", "p99", "max"):
            if f"{name}_us" in fields:
                # wrk prints rounded percentiles; the Lua ones are exact microseconds.
                result[f"{name}_ms"] = round(int(fields[f"{name}_us"]) / 1000, 3)
        result["question_list_wraps"] = int(fields.get("wraps", 0))
    result["errors"] = result["non_2xx_3xx"] + sum(socket_errors.values())
    return result


# --- processes --------------------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """Terminate ``process`` (SIGTERM, then SIGKILL after ``grace_s``)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextmanager
def chroma_server(path: Path, log_dir: Path, timeout_s: float = 60) -> Iterator[str]:
    """A ``chroma run`` server on a free 127.0.0.1 port over ``path``; yields its URL."""
    chroma = VENV_BIN / "chroma"
    if not chroma.exists():
        raise BenchError(f"the chroma CLI is not installed at {chroma}")
    path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = log_dir / "chroma.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise BenchError(f"chroma run exited:\n{_tail(log_path)}")
                try:
                    if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"chroma run did not answer within {timeout_s:.0f} s")
                time.sleep(0.2)
            yield url
        finally:
            _stop(process)


def fill_server(data_dir: Path, chroma_url: str, collection: str) -> dict[str, Any]:
    """Copy the embedded store's collection (ids, texts, metadata, embeddings) into the
    Chroma server's, unless the server already holds the same corpus version and count.
    Returns what was done."""
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.store import ChunkStore, open_embedded_client, release_embedded_client

    settings = Settings(data_dir=data_dir, chroma_url=None)
    embedder = Embedder(settings.embedding_model)  # never encodes: vectors are copied
    source = ChunkStore(
        open_embedded_client(settings.chroma_dir),
        collection,
        embedder,
        location=str(settings.chroma_dir),
    )
    try:
        version, total = source.corpus_version(), source.count()
        if total == 0:
            raise BenchError(f"the embedded store at {settings.chroma_dir} is empty: ingest first")
        server_settings = Settings(data_dir=data_dir, chroma_url=chroma_url)
        target = ChunkStore.from_settings(server_settings, embedder)
        if target.corpus_version() == version and target.count() == total:
            return {"corpus_version": version, "chunks": total, "copied": 0, "reused": True}
        started = time.monotonic()
        if target.count():  # another corpus version: start over rather than merge
            target.client.delete_collection(collection)
            target = ChunkStore.from_settings(server_settings, embedder)
        offset = 0
        while offset < total:
            page = source.collection.get(
                include=["documents", "metadatas", "embeddings"], limit=COPY_PAGE, offset=offset
            )
            if not page["ids"]:
                break
            target.collection.upsert(
                ids=page["ids"],
                documents=page["documents"],
                metadatas=page["metadatas"],
                embeddings=page["embeddings"],
            )
            offset += len(page["ids"])
        # The version last: a copy interrupted half-way is not mistaken for a full one.
        target.set_corpus_version(version)
        return {
            "corpus_version": version,
            "chunks": target.count(),
            "copied": offset,
            "reused": False,
            "copy_s": round(time.monotonic() - started, 1),
        }
    finally:
        source.close()
        release_embedded_client(settings.chroma_dir)


@dataclass(frozen=True)
class Config:
    """One service configuration under test."""

    name: str
    workers: int
    chroma_server: bool


CONFIGS = (
    Config("embedded-1w", 1, False),
    Config("server-1w", 1, True),
    Config("server-2w", 2, True),
)


def server_env(data_dir: Path, chroma_url: str | None, threads: int) -> dict[str, str]:
    """The environment of ``mlrag serve``: extractive answers, no rate limits, offline."""
    env = {
        **os.environ,
        "MLRAG_DATA_DIR": str(data_dir),
        "MLRAG_GENERATOR": "extractive",
        "MLRAG_RATE_LIMIT_PER_MINUTE": "0",
        "MLRAG_TORCH_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # `mlrag serve` makes a fresh one per run
    env.pop("MLRAG_CHROMA_URL", None)
    if chroma_url:
        env["MLRAG_CHROMA_URL"] = chroma_url
    return env


@contextmanager
def api_server(
    config: Config,
    data_dir: Path,
    chroma_url: str | None,
    threads: int,
    log_dir: Path,
    timeout_s: float,
) -> Iterator[tuple[str, int, float]]:
    """``mlrag serve --workers N`` on a free 127.0.0.1 port; yields (base URL, pid, seconds
    until every worker answered ``/ready``)."""
    mlrag = VENV_BIN / "mlrag"
    if not mlrag.exists():
        raise BenchError(f"mlrag is not installed at {mlrag}")
    port = free_port()
    log_path = log_dir / f"{config.name}.log"
    command = [
        str(mlrag), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(config.workers), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(data_dir, chroma_url, threads),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            ready_s = wait_workers_ready(base, process, config.workers, timeout_s, log_path)
            yield base, process.pid, ready_s
        finally:
            _stop(process)


def wait_workers_ready(
    base: str, process: subprocess.Popen[bytes], workers: int, timeout_s: float, log: Path
) -> float:
    """Seconds until ``workers`` distinct worker processes answered ``/ready`` with 200."""
    from api.workers import WORKER_HEADER

    header = WORKER_HEADER.decode()
    started = time.monotonic()
    seen: set[str] = set()
    while len(seen) < workers:
        if process.poll() is not None:
            raise BenchError(f"mlrag serve exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() - started > timeout_s:
            raise BenchError(f"{len(seen)} of {workers} workers ready after {timeout_s:.0f} s")
        try:
            # A new connection each time, so the kernel may hand it to any worker.
            response = httpx.get(base + "/ready", timeout=5)
            if response.status_code == 200:
                seen.add(response.headers.get(header, "?"))
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return time.monotonic() - started


# --- load -------------------------------------------------------------------------------------


class QuestionSource:
    """Hands out lists of questions never handed out before in this run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offset = 0
        self.files = 0

    def bodies_file(self, n: int) -> tuple[Path, int]:
        """A file of ``n`` new ``/v1/search`` JSON bodies, one a line; (path, n)."""
        path = self.folder / f"bodies-{self.files}.jsonl"
        self.files += 1
        lines = [json.dumps({"query": q}) for q in questions(n, self.offset)]
        self.offset += n
        path.write_text("\n".join(lines) + "\n")
        return path, n


def wrk_command(url: str, concurrency: int, duration_s: int, bodies: Path) -> list[str]:
    """The wrk command line of one measured run."""
    threads = min(concurrency, 2)
    return [
        "wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{duration_s}s",
        "--latency", "--timeout", "10s", "-s", str(LUA), url, "--", str(bodies), str(threads),
    ]  # fmt: skip


def wrk_version() -> str:
    """wrk's version line (``wrk --version`` prints it and exits 1)."""
    done = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr else ""


def run_wrk(command: list[str], duration_s: int) -> str:
    """Run wrk (bounded: its duration plus a margin) and return its output."""
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return done.stdout


def measure(
    base: str, concurrencies: list[int], duration_s: int, warmup_s: int, source: QuestionSource
) -> list[dict[str, Any]]:
    """Warm up, then one wrk run per concurrency; a row per run."""
    url = base + "/v1/search"
    rows = []
    for concurrency in concurrencies:
        if warmup_s > 0:  # threads, connections and caches warm; not measured
            bodies, _ = source.bodies_file(warmup_s * MAX_RPS)
            run_wrk(wrk_command(url, concurrency, warmup_s, bodies), warmup_s)
        bodies, n = source.bodies_file(duration_s * MAX_RPS)
        command = wrk_command(url, concurrency, duration_s, bodies)
        stats = parse_wrk(run_wrk(command, duration_s))
        rows.append({"concurrency": concurrency, "distinct_questions": n, **stats})
        print(
            f"  c={concurrency}: {stats['rps']} req/s, p50 {stats.get('p50_ms')} ms, "
            f"p99 {stats.get('p99_ms')} ms, errors {stats['errors']}",
            file=sys.stderr,
        )
    return rows


# --- report -----------------------------------------------------------------------------------


def checks(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The targets, measured on the 1-worker embedded-store service."""
    by_c = {row["concurrency"]: row for row in results.get(TARGET_CONFIG, [])}
    out: dict[str, dict[str, Any]] = {}
    if 8 in by_c:
        out["rps_c8"] = {
            "value": by_c[8]["rps"],
            "target": f">= {TARGETS['rps_c8']}",
            "met": by_c[8]["rps"] >= TARGETS["rps_c8"],
        }
        out["p99_ms_c8"] = {
            "value": by_c[8]["p99_ms"],
            "target": f"<= {TARGETS['p99_ms_c8']}",
            "met": by_c[8]["p99_ms"] <= TARGETS["p99_ms_c8"],
        }
    if 1 in by_c:
        out["p50_ms_c1"] = {
            "value": by_c[1]["p50_ms"],
            "target": f"<= {TARGETS['p50_ms_c1']}",
            "met": by_c[1]["p50_ms"] <= TARGETS["p50_ms_c1"],
        }
    return out


def markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| config | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['concurrency']} | {r['rps']:.1f} | {r.get('p50_ms', float('nan')):.1f} "
                f"| {r.get('p95_ms', float('nan')):.1f} | {r.get('p99_ms', float('nan')):.1f} "
                f"| {r['errors']} |"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """The machine the numbers come from."""
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_1m_before": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the results file and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="ingested data dir")
    parser.add_argument(
        "--server-dir",
        type=Path,
        default=ROOT / "data" / "chroma-bench-server",
        help="the Chroma server's store and the server-mode API's data dir (kept between runs)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=[c.name for c in CONFIGS],
        default=[c.name for c in CONFIGS],
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="MLRAG_TORCH_THREADS of each worker (default 0: what `mlrag serve` does, cores / "
        "workers). Measure on an idle machine: with 2 threads on 2 busy cores one worker's query "
        "embedding stalled (p50 418 ms), where 1 thread kept 16 ms",
    )
    parser.add_argument("--ready-timeout", type=float, default=300)
    parser.add_argument("--collection", default="mlrag")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be 1..600 s and --warmup 0..60 s")
    if shutil.which("wrk") is None:
        print("bench/api_load.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 2

    about = machine()
    configs = [c for c in CONFIGS if c.name in args.configs]
    results: dict[str, list[dict[str, Any]]] = {}
    details: dict[str, dict[str, Any]] = {}
    fill: dict[str, Any] | None = None
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlrag-load-")))
        source = QuestionSource(scratch)
        chroma_url = None
        if any(c.chroma_server for c in configs):
            chroma_url = stack.enter_context(
                chroma_server(args.server_dir.resolve() / "chroma", scratch)
            )
            fill = fill_server(args.data_dir.resolve(), chroma_url, args.collection)
            print(f"chroma server: {fill}", file=sys.stderr)
        try:
            for config in configs:
                data_dir = (
                    args.server_dir.resolve() / "api-data"
                    if config.chroma_server
                    else args.data_dir.resolve()
                )
                url = chroma_url if config.chroma_server else None
                print(f"{config.name}: starting mlrag serve", file=sys.stderr)
                with api_server(
                    config, data_dir, url, args.threads, scratch, args.ready_timeout
                ) as (base, _pid, ready_s):
                    details[config.name] = {
                        "workers": config.workers,
                        "store": "chroma server" if config.chroma_server else "embedded",
                        "ready_s": round(ready_s, 1),
                    }
                    results[config.name] = measure(
                        base, args.concurrency, args.duration, args.warmup, source
                    )
        except BenchError:
            for log in sorted(scratch.glob("*.log")):
                print(f"--- {log.name}\n{_tail(log)}", file=sys.stderr)
            raise

    about["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    result = {
        "machine": about,
        "command": "python bench/api_load.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "wrk": wrk_version(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "torch_threads": args.threads,
        "generator": "extractive",
        "chroma_server_fill": fill,
        "configs": details,
        "results": results,
        "checks": checks(results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(results))
    print()
    for name, check in result["checks"].items():
        print(
            f"- {name} ({TARGET_CONFIG}): {check['value']} (target {check['target']}) "
            f"{'PASS' if check['met'] else 'FAIL'}"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench/api_load.py: {exc}", file=sys.stderr)
        sys.exit(1)
