"""``mlrag ask``: answer a question from the corpus with cited sources.

    mlrag ask "QUESTION" [--retriever NAME] [--generator NAME] [--adapter NAME] [--k N]
                         [--topic T] [--strict] [--json]
    mlrag ask - < questions.txt    # one question per line -> one JSON object per line
    mlrag ask - --conversation     # the lines are one conversation: follow-ups see the turns

Exit status: 0 on success, 1 for runtime errors (nothing ingested, model or generation
failure), 2 for bad input (empty question, unknown name, bad k). In batch mode a bad line is
reported as ``{"question": ..., "error": {"code", "message"}}`` and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.pipeline import RAG
    from rag.request import AskRequest

EXIT_RUNTIME = 1
EXIT_USAGE = 2
CONVERSATION_TURNS = 6  # three exchanges: what a follow-up refers back to


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
        "--generator",
        default=None,
        help="auto, extractive, local, claude or openai (default: settings)",
    )
    parser.add_argument(
        "--adapter",
        default=None,
        help="LoRA adapter: an installed one for local; a model the inference server lists for openai",
    )
    parser.add_argument("--k", type=int, default=None, help="context chunks (default: settings.k)")
    parser.add_argument(
        "--topic", action="append", default=None, help="only chunks of this topic (repeatable)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="drop answer sentences the context does not support"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument(
        "--conversation",
        action="store_true",
        help="with '-': the lines are one conversation, each question a follow-up of the ones "
        f"before (the last {CONVERSATION_TURNS} turns are kept; each answer's 'query' shows the "
        "standalone question it was condensed to)",
    )
    parser.set_defaults(func=run_ask)


def _error(message: str, code: int) -> int:
    print(f"mlrag ask: error: {message}", file=sys.stderr)
    return code


def _ask_stdin(rag: RAG, template: AskRequest, stdin: TextIO, conversation: bool = False) -> int:
    """Answer each non-empty line; one JSON object per line, errors included. In a
    ``conversation`` each question is asked with the turns before it as history."""
    from rag.errors import InvalidInputError
    from rag.types import Turn

    status = 0
    turns: list[Turn] = []
    for line in stdin:
        question = line.strip()
        if not question:
            continue
        try:
            answer = rag.ask(replace(template, question=question, history=tuple(turns)))
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
        if conversation:
            turns = [*turns, Turn("user", question), Turn("assistant", answer.text)]
            turns = turns[-CONVERSATION_TURNS:]
    return status


def run_ask(args: argparse.Namespace, settings: Settings, rag: RAG | None = None) -> int:
    """Handler of ``mlrag ask``; returns the exit status."""
    from rag.errors import InvalidInputError, MlragError, StoreUnavailableError
    from rag.pipeline import RAG
    from rag.render import render_text
    from rag.request import AskRequest

    request = AskRequest(
        question=args.question,
        k=args.k,
        retriever=args.retriever,
        generator=args.generator,
        adapter=args.adapter,
        strict=args.strict,
        filters={"topic": args.topic} if args.topic else None,
    )
    try:
        rag = rag or RAG.from_settings(settings)  # cheap: models load on first use
        if args.question == "-":
            # Validate the options once (with a stand-in question) before reading stdin.
            rag.validate(replace(request, question="?"))
            if not rag.is_ready():
                return _error("the index is empty: run `mlrag ingest` first", EXIT_RUNTIME)
            return _ask_stdin(rag, request, sys.stdin, args.conversation)
        if args.conversation:
            return _error("--conversation reads the conversation from stdin: use '-'", EXIT_USAGE)
        # Validation first, so a typo fails before any model loads.
        answer = rag.ask(rag.validate(request))
    except InvalidInputError as exc:
        return _error(str(exc), EXIT_USAGE)
    except StoreUnavailableError as exc:  # corrupt index: exit 2, as `mlrag ingest --status`
        return _error(str(exc), EXIT_USAGE)
    except MlragError as exc:
        return _error(str(exc), EXIT_RUNTIME)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(render_text(answer))
    return 0
