"""A real llama.cpp OpenAI-compatible HTTP server (``xllamacpp.Server``) in a subprocess, for
tests that need a server they can kill.

Run as a script it loads a GGUF, listens on 127.0.0.1 (a free port chosen by the server),
prints ``LISTENING <base URL>`` and serves until killed or until its stdin closes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_ALIAS = "smollm2"
READY_PREFIX = "LISTENING "


@dataclass
class LlamaServer:
    """A running server subprocess: ``base_url`` ends in ``/v1``."""

    process: subprocess.Popen[str]
    base_url: str

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: no graceful shutdown, connections drop)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdin:
            self.process.stdin.close()
        if self.process.stdout:
            self.process.stdout.close()


def start_llama_server(
    gguf: Path,
    *,
    n_ctx: int = 2048,
    threads: int = 1,
    ignore_eos: bool = False,
    timeout_s: float = 120.0,
) -> LlamaServer:
    """Start the server on ``gguf`` and wait until it listens; ``ignore_eos`` makes every
    answer run to max_tokens (for tests that need a long stream)."""
    command = [
        sys.executable,
        "-m",
        "tests.rag.llama_server",
        str(gguf),
        "--n-ctx",
        str(n_ctx),
        "--threads",
        str(threads),
    ]
    if ignore_eos:
        command.append("--ignore-eos")
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # llama.cpp logs a lot; the ready line is on stdout
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break  # exited
        if line.startswith(READY_PREFIX):
            address = line[len(READY_PREFIX) :].strip()
            return LlamaServer(process=process, base_url=f"{address}/v1")
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"llama.cpp server did not start (exit code {process.returncode})")


def serve(gguf: Path, n_ctx: int, threads: int, ignore_eos: bool) -> None:
    """Load ``gguf`` and serve on 127.0.0.1 until stdin closes."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.model_alias = {MODEL_ALIAS}
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    params.verbosity = -1
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the server picks a free port and reports it
    params.sampling.ignore_eos = ignore_eos
    server = xllamacpp.Server(params)
    print(READY_PREFIX + server.listening_address, flush=True)
    sys.stdin.read()  # returns when the parent closes stdin (or dies)
    del server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ignore-eos", action="store_true")
    args = parser.parse_args()
    serve(args.gguf, args.n_ctx, args.threads, args.ignore_eos)


if __name__ == "__main__":
    main()
