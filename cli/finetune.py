"""``mlrag finetune``: ``train`` a LoRA/QLoRA adapter, ``list`` the registry, ``check`` a
training file, ``synth`` draft Q&A items with Claude."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rag.errors import InvalidInputError


def _modules(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one module name")
    return names


def add_example_options(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """The options that shape the abstention examples (``--removal-fraction``,
    ``--answerable-only``), shared with ``bench/finetune.py``; ``defaults`` is a TrainConfig."""
    parser.add_argument(
        "--removal-fraction",
        type=float,
        default=defaults.removal_fraction,
        help="share of answerable items repeated with the evidence removed (target: abstain)",
    )
    parser.add_argument(
        "--answerable-only",
        action="store_true",
        help="leave the unanswerable items out (the model then never abstains; the pipeline's "
        "relevance check still does)",
    )


def register(subparsers: Any) -> None:
    """Add ``mlrag finetune`` and its subcommands."""
    from finetune.overlap import DEFAULT_GOLD
    from finetune.train import DEFAULT_TARGET_MODULES, TrainConfig

    defaults = TrainConfig(name="-")
    parser = subparsers.add_parser(
        "finetune",
        help="train and list LoRA adapters for the local model",
        description="Fine-tune the local model on grounded Q&A (LoRA or QLoRA) and serve the "
        "adapter by name (`mlrag ask --generator local --adapter NAME`).",
    )
    sub = parser.add_subparsers(dest="finetune_command", metavar="SUBCOMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train an adapter",
        description="Build SFT examples from the Q&A file with the RAG's hybrid retrieval, train "
        "a LoRA adapter and save it under MLRAG_DATA_DIR/adapters/NAME.",
    )
    train.add_argument(
        "--data",
        type=Path,
        required=True,
        help="Q&A JSONL (gold-set format) or SFT JSONL ({'messages': ...})",
    )
    train.add_argument("--name", required=True, help="adapter name")
    train.add_argument("--base", help="base model (default: MLRAG_LOCAL_MODEL)")
    train.add_argument("--qlora", action="store_true", help="load the base in 4-bit nf4 (QLoRA)")
    train.add_argument(
        "--r", type=int, default=defaults.r, help=f"LoRA rank (default {defaults.r})"
    )
    train.add_argument(
        "--alpha", type=int, default=defaults.alpha, help=f"LoRA alpha (default {defaults.alpha})"
    )
    train.add_argument(
        "--dropout",
        type=float,
        default=defaults.dropout,
        help=f"LoRA dropout (default {defaults.dropout})",
    )
    train.add_argument(
        "--target-modules",
        type=_modules,
        default=DEFAULT_TARGET_MODULES,
        help="comma-separated module names, or all-linear (default q_proj,k_proj,v_proj,o_proj)",
    )
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--batch", type=int, default=defaults.batch)
    train.add_argument("--grad-accum", type=int, default=defaults.grad_accum)
    train.add_argument(
        "--max-len",
        type=int,
        default=defaults.max_len,
        help="longest example in tokens; distractor blocks are dropped to fit",
    )
    train.add_argument("--warmup-ratio", type=float, default=defaults.warmup_ratio)
    train.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="epochs without dev-loss improvement before stopping",
    )
    train.add_argument("--dev-fraction", type=float, default=defaults.dev_fraction)
    train.add_argument("--k", type=int, default=defaults.k, help="context blocks per example")
    add_example_options(train, defaults)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--resume", action="store_true", help="continue from the run's last epoch checkpoint"
    )
    train.add_argument(
        "--force", action="store_true", help="replace an existing adapter of that name"
    )
    train.add_argument(
        "--gold", type=Path, default=DEFAULT_GOLD, help="eval gold set the data must not overlap"
    )
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=run_train)

    listing = sub.add_parser("list", help="list trained adapters")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=run_list)

    check = sub.add_parser(
        "check", help="validate a training file and its overlap with the gold set"
    )
    check.add_argument("--data", type=Path, required=True)
    check.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    check.set_defaults(func=run_check)

    synth = sub.add_parser(
        "synth",
        help="draft Q&A items from chunks with Claude (needs ANTHROPIC_API_KEY)",
        description="Sample chunks from the index, ask Claude for one grounded Q&A item each, keep "
        "items whose evidence is verbatim in the chunk and that do not overlap the gold set.",
    )
    synth.add_argument(
        "--out", type=Path, required=True, help="JSONL file to write (review before training)"
    )
    synth.add_argument("--n", type=int, default=20, help="items to draft (default 20)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    synth.add_argument("--force", action="store_true", help="overwrite --out")
    synth.set_defaults(func=run_synth)


def run_train(args: argparse.Namespace, settings: Any) -> int:
    """Train an adapter and print where it went with its losses."""
    from finetune.train import TrainConfig, train_adapter

    config = TrainConfig(
        name=args.name, base=args.base or settings.local_model, qlora=args.qlora, r=args.r,
        alpha=args.alpha, dropout=args.dropout, target_modules=args.target_modules,
        epochs=args.epochs, lr=args.lr, batch=args.batch, grad_accum=args.grad_accum,
        max_len=args.max_len, warmup_ratio=args.warmup_ratio, seed=args.seed,
        dev_fraction=args.dev_fraction, patience=args.patience, k=args.k,
        removal_fraction=args.removal_fraction, unanswerable=not args.answerable_only,
        resume=args.resume, force=args.force,
    )  # fmt: skip
    result = train_adapter(
        args.data, config, settings, gold=args.gold, progress=not args.no_progress
    )
    meta = result.metadata
    print(
        f"saved adapter {args.name!r} to {result.adapter_dir}: {meta['epochs_run']} epoch(s), "
        f"{meta['steps']} steps, train loss {meta['final_train_loss']}, best dev loss "
        f"{meta['best_dev_loss']}, {meta['tokens_per_s']} tokens/s, {meta['wall_seconds']} s"
    )
    return 0


def run_list(args: argparse.Namespace, settings: Any) -> int:
    """Print the registered adapters."""
    from finetune.registry import adapter_summaries, format_table

    rows = adapter_summaries(settings)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def run_check(args: argparse.Namespace, settings: Any) -> int:
    """Validate a training file (format, overlap); one line on success."""
    from finetune.dataset import is_sft_file
    from finetune.overlap import check_file

    if args.data.is_file() and is_sft_file(args.data):
        raise InvalidInputError(
            f"{args.data}: `check` takes Q&A items (gold-set format), not SFT examples"
        )
    items = check_file(args.data, args.gold)
    answerable = sum(1 for i in items if i.answerable)
    print(
        f"ok: {args.data}: {len(items)} items ({answerable} answerable), no overlap with {args.gold}"
    )
    return 0


def run_synth(args: argparse.Namespace, settings: Any) -> int:
    """Draft Q&A items with Claude and write them to ``--out``."""
    from finetune.synth import synthesize_to_file

    report = synthesize_to_file(
        settings, args.out, n=args.n, seed=args.seed, gold=args.gold, force=args.force
    )
    print(
        f"wrote {report['written']} item(s) to {args.out} ({report['rejected']} rejected: "
        f"{', '.join(f'{k} {v}' for k, v in report['reasons'].items()) or 'none'})",
        file=sys.stdout,
    )
    return 0
