"""The ``mlrag`` command. Each subcommand is a module of this package (``cli.ingest``,
``cli.search``, ``cli.ask``, ``cli.serve``, ``cli.eval``, ``cli.finetune``) that calls into the
package owning the work; the core (``rag``) imports none of them.

A subcommand module exposes ``register(subparsers) -> None`` (adds its parser and sets
``func`` to a ``(args, settings) -> int`` handler); its heavy imports stay inside the handler
so ``mlrag --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from rag.errors import MlragError, StoreUnavailableError

# Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "cli.ingest",
    "cli.search",
    "cli.ask",
    "cli.serve",
    "cli.eval",
    "cli.finetune",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="mlrag",
        description="Grounded, cited answers to machine-learning questions from a document corpus.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


ONE_SHOT_COMMANDS = frozenset({"ask", "search"})


def quiet_import_warnings() -> None:
    """Silence warnings third-party packages print at import on every command.

    bitsandbytes (0.50, CPUs with AVX512-BF16) tries to fetch an optional 4-bit CPU kernel
    from the Hugging Face hub at import and warns when it cannot; offline that is expected and
    harmless: it falls back to its own kernel (README, "Local models"). With HF_HUB_OFFLINE=1
    the ``kernels`` package adds a notice that it skips the publisher check.
    """
    for name in ("bitsandbytes.backends.cpu.ops", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlrag`` console script."""
    quiet_import_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ONE_SHOT_COMMANDS and not args.verbose:
        # transformers draws a "Loading weights" bar on every model load; above a one-shot
        # answer it is noise (ingest, serve and finetune keep it, and hub downloads there).
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rag.config import Settings

    try:
        settings = Settings()
        return int(args.func(args, settings) or 0)
    except MlragError as exc:
        print(f"mlrag {args.command}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, StoreUnavailableError) else 1
    except KeyboardInterrupt:
        print(f"mlrag {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
