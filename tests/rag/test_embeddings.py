"""Embedder: query micro-batching, the query cache, and batch-vs-single equality."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from rag.embeddings import Embedder, QueryBatcher

DIM = 4


def text_vector(text: str) -> np.ndarray:
    """A deterministic vector per text, so a caller can tell whether it got its own row."""
    seed = sum(text.encode()) + len(text)
    vector = np.array([len(text), seed % 97, seed % 13, 1.0], dtype=np.float32)
    return vector / np.linalg.norm(vector)  # unit length, as every embedder returns


class RecordingEncoder:
    """A fake ``encode`` for QueryBatcher: records batches, can be held shut, can fail."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_with = fail_with

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.entered.set()
        assert self.gate.wait(10), "test never opened the gate"
        if self.fail_with is not None:
            raise self.fail_with
        return np.stack([text_vector(t) for t in texts])


class FakeModel:
    """Stands in for SentenceTransformer inside an Embedder; counts overlapping encodes."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.active = 0
        self.max_active = 0
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self._count_lock = threading.Lock()

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append(list(texts))
        try:
            assert self.gate.wait(10), "test never opened the gate"
            time.sleep(self.delay_s)
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("encode failed")
            return np.stack([text_vector(t) for t in texts])
        finally:
            with self._count_lock:
                self.active -= 1

    # The query fast path (Embedder.embed_queries) calls the model's modules, not encode.
    def preprocess(self, texts: list[str]) -> dict[str, list[str]]:
        return {"texts": list(texts)}

    def __call__(self, features: dict[str, list[str]]) -> dict[str, Any]:
        import torch

        return {"sentence_embedding": torch.from_numpy(self.encode(features["texts"]))}

    def get_embedding_dimension(self) -> int:
        return DIM


def fake_embedder(model: FakeModel, cache_size: int = 1024) -> Embedder:
    """An Embedder whose (lazily loaded) model is ``model``."""
    emb = Embedder("fake-model", threads=1, query_cache_size=cache_size)
    emb.__dict__["model"] = model  # fills the cached_property: nothing is loaded
    return emb


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` (tests only) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


# --- QueryBatcher -------------------------------------------------------------------------


def test_lone_request_does_not_wait_for_the_window() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder, window_s=2.0)
    started = time.monotonic()
    vector = batcher.submit("alone").result(timeout=5)
    assert time.monotonic() - started < 1.0  # the 2 s window was not waited out
    np.testing.assert_array_equal(vector, text_vector("alone"))
    assert encoder.batches == [["alone"]]


def test_waiting_requests_share_one_encode_and_each_gets_its_row() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder, window_s=0.001)
    encoder.gate.clear()
    first = batcher.submit("first")
    assert encoder.entered.wait(5)  # the worker is busy with "first"
    texts = [f"query {i} " + "x" * i for i in range(10)]
    futures = [batcher.submit(t) for t in texts]
    encoder.gate.set()
    np.testing.assert_array_equal(first.result(timeout=5), text_vector("first"))
    for text, future in zip(texts, futures, strict=True):
        np.testing.assert_array_equal(future.result(timeout=5), text_vector(text))
    assert encoder.batches == [["first"], texts]
    assert batcher.batches == 2


def test_batches_never_exceed_max_batch() -> None:
    encoder = RecordingEncoder()
    batcher = QueryBatcher(encoder, max_batch=4, window_s=0.001)
    encoder.gate.clear()
    futures = [batcher.submit("head")]
    assert encoder.entered.wait(5)
    futures += [batcher.submit(f"q{i}") for i in range(10)]
    encoder.gate.set()
    for future in futures:
        future.result(timeout=5)
    sizes = [len(b) for b in encoder.batches]
    assert sum(sizes) == 11
    assert max(sizes) == 4


def test_a_failure_reaches_every_caller_of_the_batch_and_the_worker_survives() -> None:
    encoder = RecordingEncoder(fail_with=RuntimeError("model broke"))
    batcher = QueryBatcher(encoder, window_s=0.001)
    encoder.gate.clear()
    futures = [batcher.submit("a")]
    assert encoder.entered.wait(5)
    futures += [batcher.submit(t) for t in ("b", "c", "d")]
    encoder.gate.set()
    for future in futures:
        with pytest.raises(RuntimeError, match="model broke"):
            future.result(timeout=5)
    encoder.fail_with = None
    np.testing.assert_array_equal(batcher.submit("e").result(timeout=5), text_vector("e"))


def test_an_encoder_returning_the_wrong_number_of_vectors_is_an_error() -> None:
    batcher = QueryBatcher(lambda texts: np.zeros((len(texts) + 1, DIM), dtype=np.float32))
    with pytest.raises(RuntimeError, match="2 vectors for 1 texts"):
        batcher.submit("a").result(timeout=5)


def test_worker_starts_lazily_exits_when_idle_and_restarts() -> None:
    batcher = QueryBatcher(RecordingEncoder(), idle_s=0.05)
    assert not batcher.worker_alive
    batcher.submit("a").result(timeout=5)
    wait_until(lambda: not batcher.worker_alive)
    np.testing.assert_array_equal(batcher.submit("b").result(timeout=5), text_vector("b"))


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        QueryBatcher(RecordingEncoder(), max_batch=0)


# --- Embedder with a fake model ------------------------------------------------------------


def test_query_cache_hits_skip_the_model_and_evict_least_recently_used() -> None:
    model = FakeModel()
    emb = fake_embedder(model, cache_size=2)
    assert emb.embed_documents([]).shape == (0, DIM)
    a = emb.embed_query("a")
    emb.embed_query("b")
    assert emb.embed_query("a") is a  # hit; "a" becomes most recent
    emb.embed_query("c")  # evicts "b"
    assert model.calls == [["a"], ["b"], ["c"]]
    emb.embed_query("b")
    assert model.calls[-1] == ["b"]
    assert emb.embed_query("c") is not None and len(model.calls) == 4


def test_concurrent_identical_queries_are_embedded_once() -> None:
    model = FakeModel()
    emb = fake_embedder(model)
    model.gate.clear()
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(emb.embed_query, "same question") for _ in range(6)]
        wait_until(lambda: len(model.calls) == 1)
        time.sleep(0.02)  # let every caller reach embed_query
        model.gate.set()
        vectors = [f.result(timeout=5) for f in futures]
    assert model.calls == [["same question"]]
    for vector in vectors:
        np.testing.assert_allclose(vector, text_vector("same question"), rtol=1e-6)
    assert not emb._in_flight


def test_a_failed_query_is_not_cached_and_can_be_retried() -> None:
    model = FakeModel()
    emb = fake_embedder(model)
    model.fail_next = True
    with pytest.raises(RuntimeError, match="encode failed"):
        emb.embed_query("q")
    np.testing.assert_allclose(emb.embed_query("q"), text_vector("q"), rtol=1e-6)
    assert model.calls == [["q"], ["q"]]
    assert not emb._in_flight


def test_ingest_batches_and_query_batches_never_encode_at_the_same_time() -> None:
    model = FakeModel(delay_s=0.002)
    emb = fake_embedder(model)

    def ingest(i: int) -> np.ndarray:
        return emb.embed_documents([f"doc {i} {j}" for j in range(5)])

    with ThreadPoolExecutor(max_workers=8) as pool:
        docs = [pool.submit(ingest, i) for i in range(6)]
        queries = [pool.submit(emb.embed_query, f"query {i}") for i in range(24)]
        for i, future in enumerate(queries):
            np.testing.assert_allclose(
                future.result(timeout=10), text_vector(f"query {i}"), rtol=1e-6
            )
        for future in docs:
            assert future.result(timeout=10).shape == (5, DIM)
    assert model.max_active == 1
    query_calls = [c for c in model.calls if c[0].startswith("query")]
    assert len(query_calls) < 24  # some queries shared a forward pass


# --- Embedder with the real MiniLM ----------------------------------------------------------

VARIED_TEXTS = [
    "LoRA",
    "What is gradient descent?",
    "Why does dropout reduce overfitting in deep neural networks trained on small datasets?",
    "k-means",
    "Explain the bias-variance trade-off, with an example from polynomial regression of "
    "increasing degree, and say how cross-validation helps to choose the degree.",
]


def test_batched_embeddings_equal_single_embeddings(embedder: Embedder) -> None:
    """Padding inside a batch must not change MiniLM's mean-pooled output."""
    batched = embedder.embed_documents(VARIED_TEXTS)
    singles = np.stack([embedder.embed_documents([t])[0] for t in VARIED_TEXTS])
    assert batched.dtype == np.float32 and batched.shape == (len(VARIED_TEXTS), 384)
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_query_fast_path_equals_encode(embedder: Embedder) -> None:
    """embed_queries skips encode's bookkeeping, not its maths: same vectors, also for a
    text longer than the model's window (both truncate it)."""
    texts = [*VARIED_TEXTS, "gradient " * 400]
    got = embedder.embed_queries(texts)
    assert got.dtype == np.float32 and got.shape == (len(texts), 384)
    np.testing.assert_allclose(got, embedder.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_queries([]).shape == (0, 384)


def test_concurrent_queries_are_batched_and_match_single_encoding(embedder: Embedder) -> None:
    tag = uuid.uuid4().hex[:8]  # fresh strings: the session embedder's cache must miss
    texts = [f"{t} ({tag})" for t in VARIED_TEXTS + ["What is attention?", "tensors", "ROC"]]
    expected = np.stack([embedder.embed_documents([t])[0] for t in texts])
    batches_before = embedder._query_batcher.batches
    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        embedder._lock.acquire()  # hold the model so every query is waiting when it frees up
        try:
            futures = [pool.submit(embedder.embed_query, t) for t in texts]
            wait_until(lambda: len(embedder._in_flight) == len(texts))
        finally:
            embedder._lock.release()
        got = np.stack([f.result(timeout=30) for f in futures])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the first query may have been taken alone before the others arrived; the rest share one
    assert embedder._query_batcher.batches - batches_before <= 2
    for text, vector in zip(texts, got, strict=True):
        np.testing.assert_array_equal(embedder.embed_query(text), vector)  # now cached
