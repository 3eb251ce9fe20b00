"""Does fine-tuning help the local model? Train a LoRA adapter for SmolLM2 on this CPU from
``finetune/data/train.jsonl``, then evaluate the ``local`` generator on the gold set's TEST
split with and without the adapter (``mlrag eval run --generators local [--adapter NAME]``)
and compare them item by item.

    .venv/bin/python bench/finetune.py [--name smollm2-grounded] [--epochs 2] [--max-len 1024]
        [--lr 1e-3] [--batch 4] [--max-new-tokens 100] [--removal-fraction 0.15] [--skip-train]

Writes ``bench/results/finetune-NAME.json`` and ``bench/results/finetune-NAME.md`` (a side-by-side table
of citation validity, groundedness, abstention accuracy and correctness with paired tests:
exact McNemar for binary outcomes, sign-flip permutation otherwise) and records the adapter's
eval metrics in its ``mlrag.json``. Not part of CI: on 2 idle cores training takes ~30 minutes
and the two evals ~15 and ~8 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.finetune import add_example_options  # noqa: E402
from eval.stats import compare  # noqa: E402
from finetune.registry import record_metrics  # noqa: E402
from finetune.train import TrainConfig, train_adapter  # noqa: E402
from rag.config import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SUMMARY_METRICS = (
    "correct_abstention", "false_abstention", "citation_validity", "groundedness",
    "citation_recall", "token_f1",
)  # fmt: skip
GOLD = ROOT / "eval" / "gold" / "gold.jsonl"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "finetune" / "data" / "train.jsonl")
    parser.add_argument("--name", default="smollm2-grounded")
    # Training defaults are TrainConfig's (the recipe `mlrag finetune train` uses too).
    defaults = TrainConfig(name="-")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument(
        "--max-len",
        type=int,
        default=defaults.max_len,
        help=f"longest example in tokens (default {defaults.max_len}; SmolLM2 prompts run ~930 "
        "tokens at k=4)",
    )
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--grad-accum", type=int, default=defaults.grad_accum)
    parser.add_argument("--r", type=int, default=defaults.r)
    parser.add_argument(
        "--k", type=int, default=defaults.k, help="context blocks, in training and eval"
    )
    add_example_options(parser, defaults)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=100,
        help="local generation limit in the eval (both runs)",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--answer-limit",
        type=int,
        help="answer only the first N items (faster, fewer unanswerable)",
    )
    parser.add_argument(
        "--train-items", type=int, help="train on a seeded sample of N items (CPU time)"
    )
    parser.add_argument(
        "--eval-items",
        type=int,
        help="evaluate on a seeded sample of N split items, a fifth of them unanswerable",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the two evals at the same time (only with cores to spare: on 2 cores the "
        "oversubscribed torch threads make both runs several times slower)",
    )
    parser.add_argument(
        "--skip-train", action="store_true", help="evaluate the existing adapter NAME"
    )
    parser.add_argument(
        "--skip-base-eval",
        action="store_true",
        help="reuse the base model's eval results from an earlier run",
    )
    parser.add_argument(
        "--reuse-evals", action="store_true", help="use existing results.json of either eval"
    )
    return parser.parse_args()


def sample_items(
    source: Path,
    n: int,
    seed: int,
    target: Path,
    split: str | None = None,
    unanswerable_share: float | None = None,
) -> Path:
    """Write a seeded sample of ``n`` JSONL items of ``source`` (of ``split`` when given) to
    ``target``: unanswerable items make up ``unanswerable_share`` of it (default: their share
    in the source). Items keep their file order."""
    rows = [
        json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if split:
        rows = [r for r in rows if r["split"] == split]
    unanswerable = [r for r in rows if not r["answerable"]]
    answerable = [r for r in rows if r["answerable"]]
    share = len(unanswerable) / len(rows) if unanswerable_share is None else unanswerable_share
    n_unans = min(len(unanswerable), round(n * share))
    rng = random.Random(seed)
    chosen = {
        id(r)
        for r in rng.sample(unanswerable, n_unans)
        + rng.sample(answerable, min(len(answerable), n - n_unans))
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if id(r) in chosen),
        encoding="utf-8",
    )
    return target


def eval_command(name: str | None, args: argparse.Namespace, out: Path, gold: Path) -> list[str]:
    """The ``mlrag eval run`` command line for the local generator (``name`` = adapter)."""
    command = [
        sys.executable, "-m", "cli.main", "eval", "run", "--gold", str(gold),
        "--retrievers", "hybrid", "--generators", "local", "--k", str(args.k),
        "--split", args.split, "--out", str(out), "--no-baseline-update",
    ]  # fmt: skip
    if name:
        command += ["--adapter", name]
    if args.answer_limit:
        command += ["--answer-limit", str(args.answer_limit)]
    return command


def run_evals(
    jobs: dict[str, tuple[str | None, Path]],
    args: argparse.Namespace,
    settings: Settings,
    gold: Path,
) -> dict[str, tuple[dict[str, Any], float]]:
    """Run ``mlrag eval run`` for each job (label → (adapter, out dir)), one after the other
    or, with ``--parallel``, at the same time; returns each job's results and seconds."""
    env = {
        **os.environ,
        "MLRAG_LOCAL_MAX_NEW_TOKENS": str(args.max_new_tokens),
        "MLRAG_TORCH_THREADS": str(settings.effective_threads()),
    }
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for label, (name, out) in jobs.items():
        command = eval_command(name, args, out, gold)
        print("$", " ".join(command), flush=True)
        started[label] = time.perf_counter()
        procs[label] = subprocess.Popen(command, cwd=ROOT, env=env)
        if not args.parallel:
            procs[label].wait()
            finished[label] = time.perf_counter()
    for label, proc in procs.items():
        proc.wait()
        finished.setdefault(label, time.perf_counter())
        if proc.returncode != 0:
            raise SystemExit(f"eval {label} failed with exit status {proc.returncode}")
    return {
        label: (
            json.loads((out / "results.json").read_text(encoding="utf-8")),
            finished[label] - started[label],
        )
        for label, (_, out) in jobs.items()
    }


def _run_seconds(results: dict[str, Any]) -> float:
    """Wall time of an eval run from its record (started/finished timestamps)."""
    from datetime import datetime

    run = results["run"]
    return (
        datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])
    ).total_seconds()


def local_records(results: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    """The local configuration's label, summary and records by item id."""
    per_question = results["answers"]["per_question"]
    label = next(label for label in per_question if per_question[label]["generator"] == "local")
    records = {r["id"]: r for r in per_question[label]["records"]}
    return label, results["answers"]["summary"][label], records


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def paired_metrics(
    base: dict[str, dict[str, Any]], tuned: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Per-metric means of both configurations on the same items and a paired test."""
    ids = [i for i in base if i in tuned]
    out: dict[str, Any] = {}

    def both(metric: str, only: list[str]) -> tuple[list[float], list[float]]:
        pairs = [
            (base[i][metric], tuned[i][metric])
            for i in only
            if base[i][metric] is not None and tuned[i][metric] is not None
        ]
        return [float(a) for a, _ in pairs], [float(b) for _, b in pairs]

    answerable = [i for i in ids if base[i]["answerable"]]
    unanswerable = [i for i in ids if not base[i]["answerable"]]
    decision = ([float(base[i]["abstained"] != base[i]["answerable"]) for i in ids],
                [float(tuned[i]["abstained"] != tuned[i]["answerable"]) for i in ids])  # fmt: skip
    out["abstention_decision_accuracy"] = compare(*decision, binary=True)
    out["abstention_accuracy_unanswerable"] = compare(
        [float(base[i]["abstained"]) for i in unanswerable],
        [float(tuned[i]["abstained"]) for i in unanswerable],
        binary=True,
    )
    out["false_abstention_answerable"] = compare(
        [float(base[i]["abstained"]) for i in answerable],
        [float(tuned[i]["abstained"]) for i in answerable],
        binary=True,
    )
    # Answers that abstain have no citations or sentences: compare where both answered.
    out["citation_validity"] = compare(*both("citation_validity", answerable), binary=False)
    out["groundedness"] = compare(*both("groundedness", answerable), binary=False)
    out["citation_recall"] = compare(*both("citation_recall", answerable), binary=False)
    out["token_f1"] = compare(
        [base[i]["token_f1"] or 0.0 for i in answerable],
        [tuned[i]["token_f1"] or 0.0 for i in answerable],
        binary=False,
    )
    out["embedding_similarity"] = compare(*both("embedding_similarity", answerable), binary=False)
    cited = ([float(any(s["numbers"] for s in base[i]["sentences"])) for i in answerable],
             [float(any(s["numbers"] for s in tuned[i]["sentences"])) for i in answerable])  # fmt: skip
    out["answers_with_citations"] = compare(*cited, binary=True)
    return out


def markdown(report: dict[str, Any]) -> str:
    """The side-by-side table."""
    lines = [
        f"# Fine-tuning SmolLM2 ({report['adapter']}) — local generator, {report['split']} split",
        "",
        f"Training: {report['training'].get('train_seconds', '?')} s of training "
        f"({report['training'].get('wall_seconds', '?')} s wall), {report['training'].get('examples', {})}, "
        f"{report['training'].get('tokens_per_s', '?')} tokens/s on {report['machine']}.",
        f"Eval: k={report['k']}, max_new_tokens={report['max_new_tokens']}, judge=offline; "
        f"{report['eval_seconds']['base']:.0f} s (base) and {report['eval_seconds']['adapter']:.0f} s (adapter).",
        f"Training data: `{report['train_data']}`; eval items: base `{report['gold_files']['base']}`, "
        f"adapter `{report['gold_files']['adapter']}`.",
        f"Command: `{report['command']}`",
        "",
        "| metric | n | base | + adapter | diff | p (test) |",
        "|---|---|---|---|---|---|",
    ]
    for metric, c in report["paired"].items():
        if not c.get("n"):
            lines.append(f"| {metric} | 0 | – | – | – | – |")
            continue
        lines.append(
            f"| {metric} | {c['n']} | {c['mean_a']:.3f} | {c['mean_b']:.3f} | {c['mean_b'] - c['mean_a']:+.3f} | "
            f"{c['p_value']:.3g} ({c['test']}) |"
        )
    lines += [
        "",
        "Paired on the items both runs evaluated; citation validity, groundedness, citation "
        "recall and embedding similarity on items both configurations answered. Citation "
        "recall (ALCE): share of answer sentences citing a block that supports them, an "
        "uncited sentence counting as a miss.",
        "",
        "Each run on all its items (mean [95% CI] (n)):",
        "",
        "| run | items | " + " | ".join(SUMMARY_METRICS) + " |",
        "|---|---|" + "---|" * len(SUMMARY_METRICS),
    ]
    for run, summary in report["summary"].items():
        cells = []
        for metric in SUMMARY_METRICS:
            value = summary.get(metric)
            cells.append(
                f"{value['mean']:.3f} [{value['low']:.2f}, {value['high']:.2f}] ({value['n']})"
                if value
                else "–"
            )
        lines.append(f"| {run} | {summary['n']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    settings = Settings()
    RESULTS.mkdir(parents=True, exist_ok=True)
    training: dict[str, Any] = {}
    eval_dir = RESULTS / "finetune_eval"
    data = args.data
    if args.train_items:
        data = sample_items(args.data, args.train_items, args.seed, eval_dir / "train_sample.jsonl")
    gold = GOLD
    if args.eval_items:
        gold = sample_items(
            GOLD,
            args.eval_items,
            args.seed,
            eval_dir / "gold_sample.jsonl",
            split=args.split,
            unanswerable_share=0.2,
        )
    if not args.skip_train:
        config = TrainConfig(
            name=args.name, base=settings.local_model, r=args.r, alpha=2 * args.r, epochs=args.epochs,
            lr=args.lr, batch=args.batch, grad_accum=args.grad_accum, max_len=args.max_len, k=args.k,
            removal_fraction=args.removal_fraction, unanswerable=not args.answerable_only,
            force=True,
        )  # fmt: skip
        print(f"training {args.name} on {data} …", flush=True)
        result = train_adapter(data, config, settings)
        training = {k: result.metadata[k] for k in (
            "train_seconds", "wall_seconds", "tokens_per_s", "steps", "epochs_run", "examples",
            "final_train_loss", "best_dev_loss", "history", "hyperparameters", "data_hash",
        )}  # fmt: skip
        print(json.dumps(training, default=str), flush=True)
    else:
        from finetune.registry import registry

        training = registry(settings).metadata(args.name)
        data = Path(training.get("data", data))  # what the adapter was really trained on

    base_out, tuned_out = eval_dir / "base", eval_dir / args.name
    wanted = {"base": (None, base_out), "adapter": (args.name, tuned_out)}
    reuse = {"base"} if args.skip_base_eval else set()
    if args.reuse_evals:
        reuse = set(wanted)
    jobs = {
        k: v for k, v in wanted.items() if not (k in reuse and (v[1] / "results.json").is_file())
    }
    done = run_evals(jobs, args, settings, gold)
    for label, (_, out) in wanted.items():
        if label not in done:  # reused: the eval's own record says how long it took
            results = json.loads((out / "results.json").read_text(encoding="utf-8"))
            done[label] = (results, _run_seconds(results))
    base_results, base_s = done["base"]
    tuned_results, tuned_s = done["adapter"]
    base_label, base_summary, base_records = local_records(base_results)
    tuned_label, tuned_summary, tuned_records = local_records(tuned_results)
    report = {
        "adapter": args.name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "train_data": str(data.relative_to(ROOT)) if data.is_relative_to(ROOT) else str(data),
        "gold": str(gold.relative_to(ROOT)),
        "gold_files": {
            "base": base_results["run"]["gold_files"],
            "adapter": tuned_results["run"]["gold_files"],
        },
        "split": args.split,
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "training": training,
        "eval_seconds": {"base": base_s, "adapter": tuned_s},
        "configs": {"base": base_label, "adapter": tuned_label},
        "summary": {"base": base_summary, "adapter": tuned_summary},
        "paired": paired_metrics(base_records, tuned_records),
        "eval_dirs": {
            "base": str(base_out.relative_to(ROOT)),
            "adapter": str(tuned_out.relative_to(ROOT)),
        },
    }
    (RESULTS / f"finetune-{args.name}.json").write_text(
        json.dumps(report, indent=2, default=str), encoding="utf-8"
    )
    table = markdown(report)
    (RESULTS / f"finetune-{args.name}.md").write_text(table, encoding="utf-8")
    record_metrics(settings, args.name, {
        f"{args.split}_{metric}": c["mean_b"] for metric, c in report["paired"].items() if c.get("n")
    })  # fmt: skip
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
