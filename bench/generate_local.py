"""Local LLM speed: tokens/s and time to first token of SmolLM2 in fp32 vs 4-bit nf4.

    .venv/bin/python bench/generate_local.py [--data-dir data] [--runs 3] [--max-new-tokens 64]

Both precisions answer the same prompt (a LoRA question over three context blocks) through
the generator's own prompt and decoding settings, after one warm-up run; numbers are medians.
Time to first token includes tokenising the prompt and the prefill; tokens/s counts only the
tokens after the first (decode speed). Writes ``bench/results/generate_local.json`` and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.config import Settings  # noqa: E402
from rag.generation.local import LocalGenerator  # noqa: E402
from rag.types import Chunk, Hit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "generate_local.json"
TARGET_NF4_TOKENS_PER_S = 20.0
QUESTION = "What does LoRA's r control?"
CONTEXT = (
    (
        "LoRA",
        "LoRA freezes the pretrained weights and trains two low-rank matrices A and B per layer. "
        "The rank r controls the size of these matrices: a larger r means more trainable "
        "parameters and more capacity, a smaller r means fewer parameters and less memory.",
    ),
    (
        "QLoRA",
        "QLoRA quantises the frozen base model to 4-bit NormalFloat (nf4) and trains LoRA "
        "adapters on top, so a 65B model can be fine-tuned on a single 48 GB GPU.",
    ),
    (
        "PEFT",
        "Parameter-efficient fine-tuning methods update a small number of extra parameters "
        "instead of all model weights; adapters, prefix tuning and LoRA are examples.",
    ),
)


def context_hits() -> list[Hit]:
    """The fixed context both precisions answer from."""
    return [
        Hit(
            Chunk(id=f"bench#{i}", doc_id="bench", text=text, metadata={"title": title}),
            1.0 - i / 10,
            i + 1,
            "bench",
        )
        for i, (title, text) in enumerate(CONTEXT)
    ]


class TimingStreamer:
    """A transformers streamer that records when each generated token arrives."""

    def __init__(self) -> None:
        self.token_times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        """Called with the prompt first, then once per generated token."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.token_times.append(time.perf_counter())

    def end(self) -> None:
        """Called once generation is over."""


def time_one(generator: LocalGenerator, hits: list[Hit]) -> dict[str, float]:
    """One greedy generation: new tokens, time to first token (ms), decode tokens/s."""
    with generator.manager.acquire(None) as model:
        started = time.perf_counter()
        inputs = generator.encode_prompt(QUESTION, hits)
        streamer = TimingStreamer()
        model.generate(**inputs, **generator.generation_kwargs(model), streamer=streamer)
    times = streamer.token_times
    decode_s = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": len(times),
        "ttft_ms": (times[0] - started) * 1000,
        "tokens_per_s": (len(times) - 1) / decode_s if len(times) > 1 else float("nan"),
        "total_s": times[-1] - started,
    }


def bench_precision(settings: Settings, runs: int) -> dict[str, Any]:
    """Load the model in the precision ``settings`` asks for and time ``runs`` generations."""
    generator = LocalGenerator(settings)
    started = time.perf_counter()
    model = generator.manager.model
    load_s = time.perf_counter() - started
    hits = context_hits()
    time_one(generator, hits)  # warm-up: first-call allocations and kernel selection
    samples = [time_one(generator, hits) for _ in range(runs)]
    return {
        "load_s": round(load_s, 2),
        "memory_mb": round(model.get_memory_footprint() / 1e6, 1),
        "prompt_tokens": samples[0]["prompt_tokens"],
        "new_tokens": statistics.median(s["new_tokens"] for s in samples),
        "ttft_ms": round(statistics.median(s["ttft_ms"] for s in samples), 1),
        "tokens_per_s": round(statistics.median(s["tokens_per_s"] for s in samples), 2),
        "total_s": round(statistics.median(s["total_s"] for s in samples), 2),
        "runs": samples,
    }


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = [
        f"SmolLM2-135M-Instruct, {results['torch_threads']} torch threads, "
        f"{results['max_new_tokens']} max new tokens, median of {results['runs']}; "
        f"load average {results['machine']['load_avg_before'][0]} before, "
        f"{results['machine']['load_avg_after'][0]} after",
        "",
        "| precision | load s | memory MB | prompt tokens | new tokens | TTFT ms | tokens/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["precisions"].items():
        lines.append(
            f"| {name} | {row['load_s']} | {row['memory_mb']} | {row['prompt_tokens']} | "
            f"{row['new_tokens']:g} | {row['ttft_ms']} | {row['tokens_per_s']} |"
        )
    nf4 = results["precisions"].get("nf4")
    if nf4:
        verdict = "met" if nf4["tokens_per_s"] >= TARGET_NF4_TOKENS_PER_S else "NOT met"
        lines += ["", f"Target nf4 ≥ {TARGET_NF4_TOKENS_PER_S:g} tokens/s: {verdict}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="where the converted model is cached"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "runs": args.runs,
        "max_new_tokens": args.max_new_tokens,
        "question": QUESTION,
        "precisions": {},
    }
    # Other processes share the cores: record how busy the machine was around the run.
    results["machine"]["load_avg_before"] = [round(x, 2) for x in os.getloadavg()]
    for name, four_bit in (("fp32", False), ("nf4", True)):
        settings = Settings(
            data_dir=args.data_dir,
            torch_threads=args.threads,
            local_4bit=four_bit,
            local_max_new_tokens=args.max_new_tokens,
        )
        results["torch_threads"] = settings.effective_threads()
        results["precisions"][name] = bench_precision(settings, args.runs)
    import torch

    results["machine"]["torch"] = torch.__version__
    results["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
