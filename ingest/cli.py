"""``mlrag ingest``: load, chunk and embed the corpus into the chunk store (incrementally)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.config import Settings

EXIT_OK = 0
EXIT_SOURCE_FAILED = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Load every source of the sources file, split it into chunks sized in the embedding model's
tokens, embed the chunks and store them in the Chroma collection. Incremental: unchanged
documents cost nothing, a changed document replaces exactly its old chunks, and an
interrupted run can simply be started again.

Exit status: 0 when every source ingested, 1 when at least one source failed (the others
are still ingested; failures are listed one per line), 2 on usage or configuration errors
(bad sources file, another ingest holding the lock)."""


def register(subparsers: Any) -> None:
    """Add the ``ingest`` subcommand to the ``mlrag`` parser."""
    parser = subparsers.add_parser(
        "ingest",
        help="load, chunk and embed the sources into the index",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sources",
        type=Path,
        metavar="FILE",
        help="sources file listing the paths and URLs to ingest "
        "(default: MLRAG_SOURCES, else corpus/sources.toml)",
    )
    parser.add_argument(
        "--mirror",
        type=Path,
        metavar="DIR",
        help="offline mirror: a folder whose MANIFEST.json maps URLs to local copies; URL "
        "sources are read from there instead of the network and still cite their public "
        "URL (default: MLRAG_MIRROR, else none = fetch over the network)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="link-following depth for every URL source, overriding each source's own "
        "'depth' (0 = only the page itself)",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="also delete documents (all their chunks) that the sources no longer produce; "
        "documents of sources that failed this run are kept",
    )
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="do nothing when the last complete ingest read exactly the same sources file, "
        "mirror, local files and chunking settings (URLs fetched from the network are not "
        "re-checked)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object (keys: documents, chunks_added, "
        "chunks_removed, chunks_unchanged, failed, seconds)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--status",
        action="store_true",
        help="print what the index holds (documents, chunks, corpus version, per-topic "
        "counts) and exit without ingesting",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where the index lives (default: MLRAG_DATA_DIR, else ./data)",
    )
    parser.set_defaults(func=run)


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2))
        return
    print(f"collection:     {status['collection']} ({status['store']})")
    print(f"documents:      {status['documents']}")
    print(f"chunks:         {status['chunks']}")
    print(f"corpus version: {status['corpus_version'] or '(never ingested)'}")
    if status["incomplete_documents"]:
        print(f"incomplete:     {len(status['incomplete_documents'])} (rerun `mlrag ingest`)")
    for topic, counts in status["topics"].items():
        print(f"  {topic:<24} {counts['documents']:>4} docs {counts['chunks']:>6} chunks")


def _print_summary(summary: dict[str, Any]) -> None:
    print(
        f"ingested {summary['documents']} documents in {summary['seconds']:.1f} s: "
        f"{summary['chunks_added']} chunks added, {summary['chunks_removed']} removed, "
        f"{summary['chunks_unchanged']} unchanged"
    )
    if summary["failed"]:
        print(f"{len(summary['failed'])} source(s) failed:", file=sys.stderr)
        for failure in summary["failed"]:
            print(f"  {failure['source']}: {failure['error']}", file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``mlrag ingest``; returns the exit status."""
    from ingest.pipeline import index_status, is_index_current, run_ingest
    from rag.errors import ConfigError, IngestLockedError

    if args.data_dir is not None:
        settings = settings.model_copy(update={"data_dir": args.data_dir.expanduser()})
    if args.depth is not None and args.depth < 0:
        print("mlrag ingest: error: --depth must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    if args.status:
        _print_status(index_status(settings), args.json)
        return EXIT_OK

    sources = args.sources or settings.sources
    mirror = args.mirror if args.mirror is not None else settings.mirror
    if mirror is not None and not (mirror / "MANIFEST.json").is_file():
        print(f"mlrag ingest: error: no MANIFEST.json in mirror folder {mirror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.if_stale and is_index_current(settings, sources, mirror, args.depth):
            if args.json:
                status = index_status(settings)
                skipped = {
                    "documents": status["documents"],
                    "chunks_added": 0,
                    "chunks_removed": 0,
                    "chunks_unchanged": status["chunks"],
                    "failed": [],
                    "seconds": 0.0,
                }
                print(json.dumps(skipped))
            else:
                print("index is up to date with the sources; nothing to ingest")
            return EXIT_OK
        summary = run_ingest(
            settings,
            sources_file=sources,
            mirror=mirror,
            depth=args.depth,
            prune=args.prune,
            progress=not args.no_progress,
        )
    except (ConfigError, IngestLockedError) as exc:
        print(f"mlrag ingest: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    data = summary.to_dict()
    if args.json:
        print(json.dumps(data))
        if data["failed"]:
            for failure in data["failed"]:
                print(f"failed: {failure['source']}: {failure['error']}", file=sys.stderr)
    else:
        _print_summary(data)
    return EXIT_SOURCE_FAILED if data["failed"] else EXIT_OK
