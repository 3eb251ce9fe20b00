"""``mlrag search``: show the chunks a retriever finds for a query.

    mlrag search "QUERY" [--retriever NAME] [--k N] [--topic T] [--json]
    mlrag search - < queries.txt        # one query per line -> one JSON object per line

Exit status: 0 on success, 1 when nothing is ingested (or another runtime error), 2 for
bad input (unknown retriever, bad k or filter).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.retrieval.base import Retriever
    from rag.types import Hit

SNIPPET_CHARS = 200
EXIT_RUNTIME = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    """Add the ``search`` subcommand to the ``mlrag`` parser."""
    parser = subparsers.add_parser(
        "search",
        help="show the chunks a retriever finds for a query",
        description="Retrieve chunks for a query ('-' reads one query per line from stdin and "
        "writes one JSON object per line).",
    )
    parser.add_argument("query", help="the query, or '-' to read queries from stdin")
    parser.add_argument(
        "--retriever", default=None, help="dense, bm25, hybrid or NAME+rerank (default: settings)"
    )
    parser.add_argument("--k", type=int, default=None, help="number of hits (default: settings.k)")
    parser.add_argument(
        "--topic", action="append", default=None, help="only chunks of this topic (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print hits as JSON")
    parser.set_defaults(func=run_search)


def _error(message: str, code: int) -> int:
    print(f"mlrag search: error: {message}", file=sys.stderr)
    return code


def format_hit(hit: Hit) -> str:
    """Human-readable lines for one hit: rank, score, title > section, url, snippet."""
    header = " > ".join(p for p in (hit.chunk.title, hit.chunk.section) if p) or hit.chunk.doc_id
    snippet = " ".join(hit.chunk.text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[:SNIPPET_CHARS].rstrip() + "…"
    lines = [f"{hit.rank:>2}. [{hit.score:.4f}] {header}"]
    if hit.chunk.url or hit.chunk.source:
        lines.append(f"    {hit.chunk.url or hit.chunk.source}")
    lines.append(f"    {snippet}")
    return "\n".join(lines)


def _search_stdin(
    retriever: Retriever, k: int, filters: dict[str, Any] | None, stdin: TextIO
) -> None:
    for line in stdin:
        query = line.strip()
        if not query:
            continue
        hits = retriever.search(query, k, filters)
        print(
            json.dumps({"query": query, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False),
            flush=True,
        )


def run_search(args: argparse.Namespace, settings: Settings) -> int:
    """Handler of ``mlrag search``; returns the exit status."""
    from rag.errors import EmptyIndexError, InvalidInputError, MlragError, StoreUnavailableError
    from rag.retrieval.registry import check_retriever_name, validate_k

    name = args.retriever or settings.retriever
    filters = {"topic": args.topic} if args.topic else None
    try:
        # Cheap checks first, so a typo fails before any model loads.
        check_retriever_name(name)
        k = validate_k(args.k, settings)
        retriever = _open_retriever(name, settings)
        if args.query == "-":
            _search_stdin(retriever, k, filters, sys.stdin)
            return 0
        hits = retriever.search(args.query, k, filters)
    except InvalidInputError as exc:
        return _error(str(exc), EXIT_USAGE)
    except EmptyIndexError as exc:
        return _error(str(exc), EXIT_RUNTIME)
    except StoreUnavailableError as exc:  # corrupt index: exit 2, as `mlrag ingest --status`
        return _error(str(exc), EXIT_USAGE)
    except MlragError as exc:
        return _error(str(exc), EXIT_RUNTIME)
    if args.json:
        print(
            json.dumps(
                {"query": args.query, "hits": [h.to_dict() for h in hits]},
                ensure_ascii=False,
                indent=2,
            )
        )
    elif not hits:
        print("no matching chunks")
    else:
        print("\n\n".join(format_hit(h) for h in hits))
    return 0


def _open_retriever(name: str, settings: Settings) -> Retriever:
    from rag.embeddings import Embedder
    from rag.retrieval.registry import RetrievalContext, build_retriever
    from rag.store import ChunkStore

    embedder = Embedder.from_settings(settings)
    ctx = RetrievalContext(
        settings=settings, embedder=embedder, store=ChunkStore.from_settings(settings, embedder)
    )
    return build_retriever(name, ctx)
