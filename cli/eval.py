"""``mlrag eval``: ``check`` a gold file, ``run`` an evaluation, ``calibrate`` thresholds."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rag.errors import InvalidInputError

DEFAULT_GOLD_NAMES: tuple[str, ...] = ("gold.jsonl", "hard.jsonl")


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def _floats(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {value!r}"
        ) from exc


def register(subparsers: Any) -> None:
    """Add ``mlrag eval`` and its subcommands."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate retrieval and answers on a gold set",
        description="Validate gold sets, run evaluations (results.json, report.md, report.html, "
        "wrong.md) and calibrate the abstention threshold and page boost on the dev split.",
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", required=True)

    check = sub.add_parser(
        "check",
        help="validate gold files",
        description="Prove every evidence quote occurs in its source (loaded text, else raw file) "
        "after normalisation, and flag duplicate ids, duplicate or near-duplicate questions, "
        "answerable items without evidence, unanswerable items with evidence and unknown sources. "
        "Prints one line per problem; exit status 1 when there is any error.",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument(
        "--mirror",
        type=Path,
        help="linked-pages mirror (default: MLRAG_MIRROR, else ../shared/corpus/linked)",
    )
    check.add_argument(
        "--sources", type=Path, help="sources file giving formats (default: MLRAG_SOURCES)"
    )
    check.add_argument(
        "--strict", action="store_true", help="warnings (quote only in the raw file) fail too"
    )
    check.set_defaults(func=run_check)

    run = sub.add_parser(
        "run",
        help="run an evaluation",
        description="Score retrievers (recall@k, MRR, nDCG@10, recall within 1,500/3,000/6,000 "
        "characters, latency) and answer configurations (abstention, citation validity, "
        "groundedness, correctness) with bootstrap CIs and paired tests.",
    )
    run.add_argument(
        "--gold",
        nargs="+",
        type=Path,
        default=None,
        metavar="FILE",
        help="gold JSONL files (default: eval/gold/gold.jsonl and eval/gold/hard.jsonl)",
    )
    run.add_argument("--retrievers", type=_names, default=["dense", "bm25", "hybrid", "baseline"])
    run.add_argument(
        "--generators",
        type=_names,
        default=["extractive"],
        help="comma-separated; 'none' for retrieval only",
    )
    run.add_argument("--adapter", help="LoRA adapter for the local generator")
    run.add_argument("--k", type=int, default=5, help="context chunks for answers (default 5)")
    run.add_argument(
        "--depth", type=int, default=20, help="hits retrieved for retrieval metrics (default 20)"
    )
    run.add_argument("--split", choices=["dev", "test", "all"], default="test")
    run.add_argument("--out", type=Path, required=True, help="output folder, e.g. runs/NAME/")
    run.add_argument(
        "--url", help="evaluate a running service (http://127.0.0.1:8000) instead of in-process"
    )
    run.add_argument(
        "--api-key-env",
        default="MLRAG_API_KEY",
        help="environment variable holding the service's API key",
    )
    run.add_argument("--judge", choices=["offline", "nli", "claude"], default="offline")
    run.add_argument(
        "--nli-model", help="CrossEncoder NLI model (path or hub name) for --judge nli"
    )
    run.add_argument("--limit", type=int, help="evaluate only the first N items of the split")
    run.add_argument(
        "--answer-limit",
        type=int,
        help="generate answers for the first N items only (slow generators)",
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--mirror", type=Path, help="mirror for building the baseline collection")
    run.add_argument("--no-cache", action="store_true", help="ignore the retrieval cache")
    run.add_argument(
        "--no-baseline-update", action="store_true", help="use the baseline collection as it is"
    )
    run.add_argument("--no-progress", action="store_true")
    run.add_argument(
        "--data-dir", type=Path, help="index location (default: MLRAG_DATA_DIR, else ./data)"
    )
    run.set_defaults(func=run_run)

    cal = sub.add_parser(
        "calibrate",
        help="tune abstention threshold and page boost on dev",
        description="Choose abstain_threshold (max abstention accuracy − false abstention) and "
        "source_boost for the user's page on the dev split; report both on test. Prints the values "
        "(apply them to the configuration yourself).",
    )
    cal.add_argument("--gold", nargs="+", type=Path, required=True, metavar="FILE")
    cal.add_argument(
        "--split", choices=["dev"], default="dev", help="tuning split (dev only; test is reported)"
    )
    cal.add_argument(
        "--retriever", help="retriever for the threshold (default: settings.retriever)"
    )
    cal.add_argument("--boost-retriever", help="retriever for the boost (default: --retriever)")
    cal.add_argument("--k", type=int, help="context chunks (default: settings.k)")
    cal.add_argument("--boosts", type=_floats, default=None, help="boost grid, e.g. 1,1.1,1.2,1.5")
    cal.add_argument("--out", type=Path, help="write calibration.json here")
    cal.add_argument("--data-dir", type=Path)
    cal.set_defaults(func=run_calibrate)


def default_gold_files() -> list[Path]:
    """The project's gold files that exist: the original set and the hard set (issue 13)."""
    from rag.config import PROJECT_ROOT

    folder = PROJECT_ROOT / "eval" / "gold"
    found = [folder / name for name in DEFAULT_GOLD_NAMES if (folder / name).is_file()]
    if not found:
        raise InvalidInputError(f"no gold file in {folder}; pass --gold FILE")
    return found


def _with_data_dir(settings: Any, args: argparse.Namespace) -> Any:
    if getattr(args, "data_dir", None) is not None:
        return settings.model_copy(update={"data_dir": args.data_dir.expanduser()})
    return settings


def run_check(args: argparse.Namespace, settings: Any) -> int:
    """Validate gold files; one line per problem, exit 1 on any error."""
    from eval.check import check_gold_files, default_mirror
    from eval.gold import gold_files
    from ingest.source_texts import SourceResolver

    resolver = SourceResolver(
        mirror=args.mirror or default_mirror(settings),
        sources_file=args.sources or settings.sources,
    )
    problems = check_gold_files(args.files, resolver)
    for problem in problems:
        print(problem, file=sys.stderr if problem.severity == "error" else sys.stdout)
    errors = [p for p in problems if p.severity == "error" or args.strict]
    if errors:
        print(f"{len(errors)} problem(s) in {len(args.files)} file(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(gold_files(args.files))} file(s), no errors ({len(problems)} warning(s))")
    return 0


def run_run(args: argparse.Namespace, settings: Any) -> int:
    """Run an evaluation and print where the reports are."""
    from eval.runner import RunOptions, run_eval
    from ingest.baseline import update_baseline

    settings = _with_data_dir(settings, args)
    generators = [] if args.generators == ["none"] else args.generators
    if args.k < 1 or args.depth < max(args.k, 1):
        raise InvalidInputError("--k must be ≥ 1 and --depth ≥ --k")
    options = RunOptions(
        gold=args.gold or default_gold_files(), out=args.out, retrievers=args.retrievers, generators=generators,
        adapter=args.adapter, k=args.k, split=args.split, depth=args.depth, url=args.url,
        api_key=os.environ.get(args.api_key_env) if args.url else None, judge=args.judge,
        nli_model=args.nli_model, seed=args.seed, limit=args.limit, answer_limit=args.answer_limit,
        progress=not args.no_progress, use_cache=not args.no_cache,
        update_baseline=not args.no_baseline_update, mirror=args.mirror,
        baseline_builder=update_baseline,
    )  # fmt: skip
    results = run_eval(settings, options)
    for name, reason in results["skipped"].items():
        print(f"skipped {name}: {reason}", file=sys.stderr)
    from eval.report import targets

    for line in targets(results):
        print(line[2:])
    print(f"wrote {args.out}/results.json, report.md, report.html, wrong.md")
    return 0


def run_calibrate(args: argparse.Namespace, settings: Any) -> int:
    """Calibrate on dev, report test, print the chosen values."""
    from eval.calibrate import DEFAULT_BOOSTS, format_calibration, run_calibration

    settings = _with_data_dir(settings, args)
    result = run_calibration(
        settings, args.gold, retriever=args.retriever, k=args.k, boosts=args.boosts or DEFAULT_BOOSTS,
        boost_retriever=args.boost_retriever, out=args.out,
    )  # fmt: skip
    print(format_calibration(result))
    return 0
