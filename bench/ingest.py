"""Ingest benchmark: full ingest of the corpus vs bare ``SentenceTransformer.encode`` of the
same chunk texts, and the cost of an unchanged re-ingest.

    .venv/bin/python bench/ingest.py [--repeats 3] [--mirror ../shared/corpus/linked]

Each repeat ingests into a fresh temporary data dir with the model already loaded (model
load time is not ingest time), then re-ingests unchanged, then encodes the stored chunks'
indexed texts with the same model, batch size and thread count. Medians over the repeats
go to ``bench/results/ingest.json`` and a Markdown table is printed.
Targets: pipeline overhead <= 15 % over bare encoding; unchanged re-ingest <= 3 % of a full
ingest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from ingest.pipeline import run_ingest  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.store import ChunkStore  # noqa: E402

OVERHEAD_TARGET = 0.15
REINGEST_TARGET = 0.03


def one_repeat(
    base: Settings, embedder: Embedder, sources: Path, mirror: Path | None
) -> dict[str, Any]:
    """Full ingest, unchanged re-ingest and bare encoding in a fresh data dir."""
    with tempfile.TemporaryDirectory(prefix="mlrag-bench-") as tmp:
        settings = base.model_copy(update={"data_dir": Path(tmp)})
        store = ChunkStore.from_settings(settings, embedder)
        started, cpu = time.perf_counter(), time.process_time()
        full = run_ingest(
            settings, sources_file=sources, mirror=mirror, progress=False, store=store
        )
        full_s, full_cpu = time.perf_counter() - started, time.process_time() - cpu

        started, cpu = time.perf_counter(), time.process_time()
        again = run_ingest(
            settings, sources_file=sources, mirror=mirror, progress=False, store=store
        )
        reingest_s, reingest_cpu = time.perf_counter() - started, time.process_time() - cpu

        texts = [c.indexed_text for c in store.iter_chunks()]
        started, cpu = time.perf_counter(), time.process_time()
        embedder.model.encode(
            texts,
            batch_size=settings.embed_batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        bare_s, bare_cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "documents": full.documents,
        "chunks": full.chunks_added,
        "failed": full.failed,
        "reingest_added": again.chunks_added,
        "full_s": full_s,
        "reingest_s": reingest_s,
        "bare_encode_s": bare_s,
        "chunks_per_s": full.chunks_added / full_s,
        "bare_chunks_per_s": len(texts) / bare_s,
        "overhead": full_s / bare_s - 1.0,
        "reingest_fraction": reingest_s / full_s,
        # CPU seconds of this process: far less sensitive than wall time to other jobs
        # sharing the cores (the machine this was written on is shared by several).
        "full_cpu_s": full_cpu,
        "reingest_cpu_s": reingest_cpu,
        "bare_encode_cpu_s": bare_cpu,
        "overhead_cpu": full_cpu / bare_cpu - 1.0,
        "reingest_fraction_cpu": reingest_cpu / full_cpu,
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The README's table of the medians."""
    m = result["median"]
    rows = [
        ("documents / chunks", f"{m['documents']:.0f} / {m['chunks']:.0f}"),
        ("full ingest", f"{m['full_s']:.1f} s ({m['chunks_per_s']:.1f} chunks/s)"),
        (
            "bare `SentenceTransformer.encode`",
            f"{m['bare_encode_s']:.1f} s ({m['bare_chunks_per_s']:.1f} chunks/s)",
        ),
        (
            "pipeline overhead, wall time",
            f"{m['overhead'] * 100:+.1f} % (target <= {OVERHEAD_TARGET * 100:.0f} %)",
        ),
        (
            "pipeline overhead, CPU time",
            f"{m['overhead_cpu'] * 100:+.1f} % ({m['full_cpu_s']:.0f} vs {m['bare_encode_cpu_s']:.0f} CPU s)",
        ),
        (
            "unchanged re-ingest, wall time",
            f"{m['reingest_s']:.2f} s = {m['reingest_fraction'] * 100:.2f} % of full (target <= {REINGEST_TARGET * 100:.0f} %)",
        ),
        (
            "unchanged re-ingest, CPU time",
            f"{m['reingest_cpu_s']:.2f} s = {m['reingest_fraction_cpu'] * 100:.2f} % of full",
        ),
    ]
    lines = [
        f"Ingest benchmark: median of {result['repeats']} run(s), batch {result['batch_size']}, "
        f"{result['threads']} torch thread(s), chunk {result['chunk_tokens']}/{result['chunk_overlap']} tokens",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results file."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=Path, default=REPO_ROOT / "corpus" / "sources.toml")
    parser.add_argument(
        "--mirror", type=Path, default=REPO_ROOT.parent / "shared" / "corpus" / "linked"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0 = settings / all cores)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "ingest.json")
    args = parser.parse_args(argv)

    base = Settings()
    if args.threads:
        base = base.model_copy(update={"torch_threads": args.threads})
    mirror = args.mirror if (args.mirror / "MANIFEST.json").is_file() else None
    embedder = Embedder.from_settings(base)
    embedder.embed_documents(["warm-up"])  # load the model outside the timings

    runs = []
    for i in range(args.repeats):
        run = one_repeat(base, embedder, args.sources, mirror)
        runs.append(run)
        print(
            f"repeat {i + 1}/{args.repeats}: {run['chunks']} chunks, full {run['full_s']:.1f} s, "
            f"bare {run['bare_encode_s']:.1f} s, overhead {run['overhead'] * 100:+.1f} %, "
            f"re-ingest {run['reingest_s']:.2f} s ({run['reingest_fraction'] * 100:.2f} %), "
            f"{len(run['failed'])} failed",
            file=sys.stderr,
        )
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    result = {
        "repeats": args.repeats,
        "threads": base.effective_threads(),
        "batch_size": base.embed_batch_size,
        "chunk_tokens": base.chunk_tokens,
        "chunk_overlap": base.chunk_overlap,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "mirror": str(mirror) if mirror else None,
        "median": {k: statistics.median(r[k] for r in runs) for k in numeric},
        "runs": runs,
        "targets": {"overhead": OVERHEAD_TARGET, "reingest_fraction": REINGEST_TARGET},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
