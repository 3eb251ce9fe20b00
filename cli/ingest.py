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
EXIT_STORE_UNAVAILABLE = 2  # the index cannot be read: same status as `mlrag search/ask`
EXIT_STORE_WRITE = 4

DESCRIPTION = """\
Load every source of the sources file, split it into chunks sized in the embedding model's
tokens, embed the chunks and store them in the Chroma collection. Incremental: unchanged
documents cost nothing, a changed document replaces exactly its old chunks, and an
interrupted run can simply be started again."""

EPILOG = """\
exit status:
  0  every source ingested (or --status / --backup / --restore done)
  1  at least one source failed; the others are still ingested and the failures are
     listed one per line (with --rebuild: the new index was not swapped in, the old one
     is kept)
  2  usage or configuration error (bad sources file, another ingest holding the lock),
     or the index cannot be read (corrupt or half-deleted store): run
     `mlrag ingest --rebuild`, or restore a backup with --restore
  4  writing the index failed (disk full, read-only file system); free space and run the
     same command again: it resumes where it stopped

recovery and backups (embedded store; with a Chroma server use the server's volume):
  mlrag ingest --rebuild             re-ingest into a fresh store, swapped in when complete
  mlrag ingest --backup FILE.tar.gz  index + ingest state + feedback log, under the lock
  mlrag ingest --restore FILE.tar.gz [--force]"""


def register(subparsers: Any) -> None:
    """Add the ``ingest`` subcommand to the ``mlrag`` parser."""
    parser = subparsers.add_parser(
        "ingest",
        help="load, chunk and embed the sources into the index",
        description=DESCRIPTION,
        epilog=EPILOG,
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
        "--rebuild",
        action="store_true",
        help="re-ingest every source into a fresh store and swap it in only when complete "
        "(the way out of a corrupt index; the current index is not read and stays live "
        "until the swap; a failed source cancels the swap)",
    )
    parser.add_argument(
        "--backup",
        type=Path,
        metavar="FILE",
        help="write the index, the ingest state and the feedback log to FILE (.tar.gz), "
        "holding the ingest lock so the copy is consistent, and exit",
    )
    parser.add_argument(
        "--restore",
        type=Path,
        metavar="FILE",
        help="restore a --backup FILE into the data dir, which must not hold an index "
        "yet (see --force), and exit; restart `mlrag serve` afterwards",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --restore: replace the index, ingest state and feedback log already in "
        "the data dir",
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


def _error(message: object, status: int) -> int:
    """Print one error line and return ``status``."""
    print(f"mlrag ingest: error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


def _check_modes(args: argparse.Namespace) -> str | None:
    """The usage error of a bad option combination, if any."""
    modes = [
        name
        for name, on in (
            ("--status", args.status),
            ("--rebuild", args.rebuild),
            ("--backup", args.backup is not None),
            ("--restore", args.restore is not None),
        )
        if on
    ]
    if len(modes) > 1:
        return f"{' and '.join(modes)} cannot be combined"
    if args.force and args.restore is None:
        return "--force only applies to --restore"
    if args.rebuild and (args.prune or args.if_stale):
        return "--rebuild ingests everything afresh: --prune and --if-stale do not apply"
    if args.depth is not None and args.depth < 0:
        return "--depth must be >= 0"
    return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handle ``mlrag ingest``; returns the exit status (see ``EPILOG``)."""
    from rag.errors import (
        ConfigError,
        IngestLockedError,
        InvalidInputError,
        StoreUnavailableError,
        StoreWriteError,
    )

    if args.data_dir is not None:
        settings = settings.model_copy(update={"data_dir": args.data_dir.expanduser()})
    problem = _check_modes(args)
    if problem:
        return _error(problem, EXIT_USAGE)
    try:
        return _run(args, settings)
    except (ConfigError, IngestLockedError, InvalidInputError) as exc:
        return _error(exc, EXIT_USAGE)
    except StoreUnavailableError as exc:
        return _error(exc, EXIT_STORE_UNAVAILABLE)
    except StoreWriteError as exc:
        return _error(exc, EXIT_STORE_WRITE)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import index_status, is_index_current, run_ingest

    if args.status:
        _print_status(index_status(settings), args.json)
        return EXIT_OK
    if args.backup is not None or args.restore is not None:
        return _backup_or_restore(args, settings)

    sources = args.sources or settings.sources
    mirror = args.mirror if args.mirror is not None else settings.mirror
    if mirror is not None and not (mirror / "MANIFEST.json").is_file():
        return _error(f"no MANIFEST.json in mirror folder {mirror}", EXIT_USAGE)
    if args.rebuild:
        return _rebuild(args, settings, sources, mirror)
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
    return _report_summary(summary.to_dict(), args.json)


def _report_summary(data: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(data))
        if data["failed"]:
            for failure in data["failed"]:
                print(f"failed: {failure['source']}: {failure['error']}", file=sys.stderr)
    else:
        _print_summary(data)
    return EXIT_SOURCE_FAILED if data["failed"] else EXIT_OK


def _rebuild(
    args: argparse.Namespace, settings: Settings, sources: Path | None, mirror: Path | None
) -> int:
    from ingest.rebuild import rebuild_index

    result = rebuild_index(
        settings,
        sources_file=sources,
        mirror=mirror,
        depth=args.depth,
        progress=not args.no_progress,
    )
    data = {**result.summary.to_dict(), "swapped": result.swapped}
    status = _report_summary(data, args.json)
    if not args.json:
        if result.swapped:
            print(f"rebuilt index is live in {settings.chroma_dir} (restart `mlrag serve`)")
        else:
            print("rebuild not swapped in: a source failed; the previous index is kept")
    return status


def _backup_or_restore(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.backup import create_backup, restore_backup

    if args.backup is not None:
        info = create_backup(settings, args.backup)
        verb = "backed up"
    else:
        info = restore_backup(settings, args.restore, force=args.force)
        verb = "restored"
    if args.json:
        print(json.dumps({"action": verb, **info.to_dict()}))
        return EXIT_OK
    print(
        f"{verb} {', '.join(info.members)} ({info.size_bytes} bytes, {info.created}): {info.path}"
    )
    if args.restore is not None and info.collection and info.collection != settings.collection:
        print(
            f"note: the backup holds collection {info.collection!r}; set MLRAG_COLLECTION to "
            "use it",
            file=sys.stderr,
        )
    return EXIT_OK
