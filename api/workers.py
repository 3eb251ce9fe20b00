"""Several API worker processes (``mlrag serve --workers N``): what must hold before they
start, the environment each one reads its settings from, and what each worker's share of
the per-process limits is.

Each worker is a separate process with its own copy of the models, the BM25 index, the
rate-limit buckets and the generation gate; they share the Chroma server (chunks, corpus
version, the ingest lock and ingest job records), the data dir (BM25 builds) and, through
``PROMETHEUS_MULTIPROC_DIR``, the metrics.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from rag.config import Settings

WORKER_HEADER = b"x-mlrag-worker"
EMBEDDED_STORE_REFUSAL = (
    "--workers {n} needs a shared Chroma server: several processes writing one embedded store "
    "({path}) is unsafe; set MLRAG_CHROMA_URL to a `chroma run` server "
    "(scripts/start-chroma.sh), or use --workers 1"
)


def refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve with ``settings`` (None when they can)."""
    if workers > 1 and not settings.chroma_url:
        return EMBEDDED_STORE_REFUSAL.format(n=workers, path=settings.chroma_dir)
    return None


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """CPU threads each worker may use so ``workers`` processes do not oversubscribe."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def worker_environment(
    settings: Settings, *, host: str, port: int, workers: int, cores: int | None = None
) -> dict[str, str]:
    """Environment variables that carry the command line's choices to every worker (each
    worker builds its settings from the environment). Thread counts the user set are kept;
    automatic ones (0) become cores / workers."""
    env = {"MLRAG_HOST": host, "MLRAG_PORT": str(port), "MLRAG_WORKERS": str(workers)}
    if workers > 1:
        threads = str(threads_per_worker(workers, cores))
        if settings.torch_threads == 0:
            env["MLRAG_TORCH_THREADS"] = threads
        if settings.llamacpp_threads == 0:
            env["MLRAG_LLAMACPP_THREADS"] = threads
    return env


def uses_local_model(settings: Settings) -> bool:
    """Whether default answers come from a model loaded inside each API process."""
    from rag.errors import MlragError
    from rag.generation.registry import resolve_generator_name

    try:
        return resolve_generator_name(settings.generator, settings) == "local"
    except MlragError:  # a bad generator name is reported when the workers load
        return False


def local_model_warning(settings: Settings, workers: int) -> str | None:
    """The start-up warning for N copies of an in-process model (None when not needed)."""
    if workers <= 1 or not uses_local_model(settings):
        return None
    return (
        f"{workers} workers each load their own copy of the local model (about 1.9 GB each) "
        "and share the CPU cores; run the model once in an inference server (llama.cpp's "
        "server, vLLM) and set MLRAG_OPENAI_BASE_URL, or use --workers 1"
    )


def generation_slots(settings: Settings) -> tuple[int, int]:
    """This worker's (concurrent, queued) generations: the configured totals divided by
    the number of workers, rounded up, so N workers together admit about the totals."""
    workers = max(1, settings.workers)
    active = max(1, math.ceil(settings.max_concurrent_generations / workers))
    return active, math.ceil(settings.max_queued_generations / workers)


class WorkerHeaderMiddleware:
    """Names the worker process that answered (``X-Mlrag-Worker: <pid>``), so an operator
    (and the consistency test) can tell N workers apart behind one port."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.worker = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_worker(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (WORKER_HEADER, self.worker)],
                }
            await send(message)

        await self.app(scope, receive, send_with_worker)
