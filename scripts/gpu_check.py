"""Check the ``openai`` generator against vLLM on this machine's GPU: start
``vllm serve BASE --enable-lora --lora-modules a=PATH1 b=PATH2`` on 127.0.0.1, wait for
``/v1/models``, answer once and stream once with the base model and each adapter, print time
to first token and tokens/s, then stop vLLM. Run through ``scripts/gpu-check.sh``, which skips
cleanly where there is no GPU or no vLLM.

    scripts/gpu-check.sh BASE a=/path/to/adapter-a b=/path/to/adapter-b
    (or GPU_CHECK_BASE, GPU_CHECK_ADAPTERS="a=PATH1 b=PATH2" in the environment)

Exit status: 0 when every check passed (or skipped), 1 when one failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "What does LoRA train, and what does the rank control?"
CONTEXT = (
    "LoRA freezes the pretrained weights and trains two low-rank matrices A and B per layer. "
    "The rank r controls the size of these matrices, and so the number of trained parameters."
)


def skip_reason(vllm_python: str) -> str | None:
    """Why this machine cannot run the check (no GPU, no vLLM), or None."""
    if shutil.which("nvidia-smi") is None:
        return "no GPU: nvidia-smi not found"
    if subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        return "no GPU: nvidia-smi failed"
    probe = subprocess.run([vllm_python, "-c", "import vllm"], capture_output=True)
    if probe.returncode != 0:
        return f"no vLLM: '{vllm_python} -c \"import vllm\"' failed"
    return None


def vllm_command(vllm_python: str, base: str, adapters: dict[str, str], port: int) -> list[str]:
    """The ``vllm serve`` command line (the ``vllm`` CLI when on PATH, else the module)."""
    if shutil.which("vllm"):
        command = ["vllm", "serve", base]
    else:
        command = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", base]
    command += ["--host", "127.0.0.1", "--port", str(port), "--enable-lora"]
    if adapters:
        command += ["--lora-modules", *(f"{name}={path}" for name, path in adapters.items())]
    return command


def wait_for_models(base_url: str, expected: set[str], timeout_s: float, process: Any) -> None:
    """Wait until ``GET /v1/models`` lists ``expected`` (vLLM loads the model first)."""
    import json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with status {process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                listed = {m["id"] for m in json.load(response)["data"]}
            if expected <= listed:
                return
        except OSError:
            pass
        time.sleep(2)
    raise RuntimeError(f"vLLM did not list {sorted(expected)} within {timeout_s:.0f} s")


def run_checks(base_url: str, base: str, adapters: list[str], max_tokens: int) -> list[str]:
    """The test suite's checks through the ``openai`` generator; returns the failures."""
    from rag.config import Settings
    from rag.errors import UnknownNameError
    from rag.generation.openai_server import OpenAIServerGenerator
    from rag.types import AnswerEvent, Chunk, Hit, TokenEvent

    chunk = Chunk(id="lora#1", doc_id="lora", text=CONTEXT, metadata={"title": "LoRA"})
    hits = [Hit(chunk=chunk, score=0.9, rank=1, retriever="hybrid")]
    settings = Settings(openai_base_url=base_url, openai_model=base, openai_max_tokens=max_tokens)
    generator = OpenAIServerGenerator(settings)
    failures: list[str] = []
    listed = generator.adapter_names()
    if sorted(listed) != sorted(adapters):
        failures.append(f"adapters listed {listed}, expected {adapters}")
    try:
        generator.generate(QUESTION, hits, adapter="no-such-adapter")
        failures.append("an unknown adapter was accepted")
    except UnknownNameError:
        pass
    print(f"{'model':<24} {'answer ms':>10} {'first token ms':>15} {'tokens/s':>9}  answer")
    for adapter in [None, *adapters]:
        label = adapter or f"{base} (base)"
        answer = generator.generate(QUESTION, hits, adapter=adapter)
        events = list(generator.stream(QUESTION, hits, adapter=adapter))
        tokens = [e for e in events if isinstance(e, TokenEvent)]
        finals = [e for e in events if isinstance(e, AnswerEvent)]
        if not answer.text or not tokens or len(finals) != 1 or events[-1] is not finals[0]:
            failures.append(f"{label}: empty answer or malformed stream")
            continue
        timings = finals[0].answer.timings_ms
        decode_s = timings.get("decode", 0.0) / 1000
        # vLLM sends one token per delta (a few detokenised together at most).
        rate = (len(tokens) - 1) / decode_s if decode_s > 0 and len(tokens) > 1 else 0.0
        print(
            f"{label[:24]:<24} {answer.timings_ms['generate']:>10.0f} "
            f"{timings.get('first_token', 0.0):>15.0f} {rate:>9.1f}  {answer.text[:60]!r}"
        )
    return failures


def parse_adapters(values: list[str]) -> dict[str, str]:
    """``NAME=PATH`` pairs as a dict (SystemExit 2 on a malformed one)."""
    adapters: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"adapter {value!r} is not NAME=PATH")
        adapters[name] = path
    return adapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", default=os.environ.get("GPU_CHECK_BASE"))
    parser.add_argument(
        "adapters", nargs="*", default=os.environ.get("GPU_CHECK_ADAPTERS", "").split()
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GPU_CHECK_PORT", "8011")))
    parser.add_argument("--startup-timeout", type=float, default=900.0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--vllm-python", default=os.environ.get("VLLM_PYTHON", sys.executable))
    args = parser.parse_args(argv)

    reason = skip_reason(args.vllm_python)
    if reason is not None:
        print(f"SKIP gpu-check: {reason}")
        return 0
    if not args.base:
        print("gpu-check: give the base model (path or hub name) as BASE or GPU_CHECK_BASE")
        return 2
    adapters = parse_adapters(list(args.adapters))

    base_url = f"http://127.0.0.1:{args.port}/v1"
    command = vllm_command(args.vllm_python, args.base, adapters, args.port)
    print("starting:", " ".join(command), flush=True)
    log_path = ROOT / "data" / "gpu-check-vllm.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        started = time.monotonic()
        wait_for_models(base_url, {args.base, *adapters}, args.startup_timeout, process)
        print(f"vLLM ready in {time.monotonic() - started:.0f} s (log: {log_path})")
        failures = run_checks(base_url, args.base, list(adapters), args.max_tokens)
    except Exception as exc:  # noqa: BLE001 - one line, then vLLM is stopped
        failures = [f"{type(exc).__name__}: {exc}"]
    finally:
        # vLLM starts worker processes: stop its whole process group.
        with_group = process.poll() is None
        if with_group:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    for failure in failures:
        print("FAIL", failure)
    print("gpu-check:", "failed" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
