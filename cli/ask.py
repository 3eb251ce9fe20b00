"""``mlrag ask``: answer a question from the corpus with cited sources.

    mlrag ask "QUESTION" [--retriever NAME] [--generator NAME] [--adapter NAME] [--k N]
                         [--topic T] [--strict] [--json]
    mlrag ask - < questions.txt    # one question per line -> one JSON object per line

Exit status: 0 on success, 1 for runtime errors (nothing ingested, model or generation
failure), 2 for bad input (empty question, unknown name, bad k). In batch mode a bad line is
reported as ``{"question": ..., "error": {"code", "message"}}`` and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.pipeline import RAG
    from rag.types import Answer

EXIT_RUNTIME = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    """Add the ``ask`` subcommand to the ``mlrag`` parser."""
    parser = subparsers.add_parser(
        "ask",
        help="answer a question with cited sources",
        description="Answer a question from the ingested corpus ('-' reads one question per "
        "line from stdin and writes one JSON object per line).",
    )
    parser.add_argument("question", help="the question, or '-' to read questions from stdin")
    parser.add_argument(
        "--retriever", default=None, help="dense, bm25, hybrid or NAME+rerank (default: settings)"
    )
    parser.add_argument(
        "--generator", default=None, help="auto, extractive, local or claude (default: settings)"
    )
    parser.add_argument("--adapter", default=None, help="LoRA adapter for the local generator")
    parser.add_argument("--k", type=int, default=None, help="context chunks (default: settings.k)")
    parser.add_argument(
        "--topic", action="append", default=None, help="only chunks of this topic (repeatable)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="drop answer sentences the context does not support"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.set_defaults(func=run_ask)


def format_answer(answer: Answer) -> str:
    """Human-readable answer: the text, then numbered sources with their quoted sentence."""
    lines = [textwrap.fill(answer.text, width=100, break_long_words=False, break_on_hyphens=False)]
    if answer.abstained:
        lines.append("")
        lines.append("(abstained: the corpus does not cover this question)")
        return "\n".join(lines)
    if answer.citations:
        lines.append("")
        lines.append("Sources:")
        for c in answer.citations:
            heading = " > ".join(p for p in (c.title, c.section) if p) or c.source
            lines.append(f"[{c.n}] {heading}")
            if c.url or c.source:
                lines.append(f"    {c.url or c.source}")
            lines.append(f'    "{c.quote}"')
    if answer.unsupported:
        lines.append("")
        lines.append(f"({len(answer.unsupported)} sentence(s) not supported by the cited context)")
    if answer.removed_citations:
        lines.append(
            f"({answer.removed_citations} citation marker(s) pointing at no source removed)"
        )
    return "\n".join(lines)


def _error(message: str, code: int) -> int:
    print(f"mlrag ask: error: {message}", file=sys.stderr)
    return code


def _ask_stdin(rag: RAG, options: dict[str, Any], stdin: TextIO) -> int:
    """Answer each non-empty line; one JSON object per line, errors included."""
    from rag.errors import InvalidInputError

    status = 0
    for line in stdin:
        question = line.strip()
        if not question:
            continue
        try:
            answer = rag.ask(question, **options)
        except InvalidInputError as exc:
            # One bad line must not lose the answers to the others.
            print(
                json.dumps(
                    {"question": question, "error": {"code": exc.code, "message": str(exc)}}
                ),
                flush=True,
            )
            status = EXIT_USAGE
            continue
        print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
    return status


def run_ask(args: argparse.Namespace, settings: Settings, rag: RAG | None = None) -> int:
    """Handler of ``mlrag ask``; returns the exit status."""
    from rag.errors import InvalidInputError, MlragError, StoreUnavailableError
    from rag.generation.registry import resolve_generator_name
    from rag.pipeline import RAG
    from rag.retrieval.registry import check_retriever_name, validate_k

    options: dict[str, Any] = {
        "k": args.k,
        "retriever": args.retriever,
        "generator": args.generator,
        "adapter": args.adapter,
        "strict": args.strict,
        "filters": {"topic": args.topic} if args.topic else None,
    }
    try:
        # Cheap checks first, so a typo fails before any model loads.
        check_retriever_name(args.retriever or settings.retriever)
        resolve_generator_name(args.generator or settings.generator, settings)
        validate_k(args.k, settings)
        rag = rag or RAG.from_settings(settings)
        if args.question == "-":
            if not rag.is_ready():
                return _error("the index is empty: run `mlrag ingest` first", EXIT_RUNTIME)
            return _ask_stdin(rag, options, sys.stdin)
        answer = rag.ask(args.question, **options)
    except InvalidInputError as exc:
        return _error(str(exc), EXIT_USAGE)
    except StoreUnavailableError as exc:  # corrupt index: exit 2, as `mlrag ingest --status`
        return _error(str(exc), EXIT_USAGE)
    except MlragError as exc:
        return _error(str(exc), EXIT_RUNTIME)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_answer(answer))
    return 0
