"""Fixtures of the API tests: a scriptable fake pipeline for route, security and SSE tests,
and a real :class:`rag.pipeline.RAG` over a tiny store for integration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.errors import EmptyIndexError, GenerationError, UnknownNameError
from rag.request import AskRequest, ValidRequest, validate
from rag.types import Answer, AnswerEvent, Chunk, Citation, Hit, TokenEvent

# --- a tiny corpus: six short documents, one or two chunks each --------------------------
TINY_DOCS: list[dict[str, Any]] = [
    {
        "doc_id": "overfitting",
        "title": "Overfitting",
        "url": "https://example.org/overfitting",
        "topic": "ml",
        "chunks": [
            "Overfitting happens when a model learns the noise in the training data instead of the underlying pattern. "
            "An overfitted model performs well on the training set but poorly on unseen data.",
            "Regularization, early stopping and more training data are common ways to reduce overfitting.",
        ],
    },
    {
        "doc_id": "gradient-descent",
        "title": "Gradient descent",
        "url": "https://example.org/gradient-descent",
        "topic": "optimization",
        "chunks": [
            "Gradient descent is an iterative optimization algorithm that minimizes a loss function by moving the "
            "parameters in the direction of the negative gradient. The learning rate controls the step size."
        ],
    },
    {
        "doc_id": "dropout",
        "title": "Dropout",
        "url": "https://example.org/dropout",
        "topic": "deep-learning",
        "chunks": [
            "Dropout is a regularization technique for neural networks that randomly sets a fraction of the "
            "activations to zero during training, which prevents units from co-adapting."
        ],
    },
    {
        "doc_id": "random-forest",
        "title": "Random forests",
        "url": "https://example.org/random-forest",
        "topic": "ml",
        "chunks": [
            "A random forest is an ensemble of decision trees trained on bootstrap samples of the data with random "
            "feature subsets; its prediction averages the trees' predictions."
        ],
    },
    {
        "doc_id": "pca",
        "title": "Principal component analysis",
        "url": "https://example.org/pca",
        "topic": "ml",
        "chunks": [
            "Principal component analysis (PCA) is a linear dimensionality reduction method that projects the data "
            "onto the directions of maximum variance, called principal components."
        ],
    },
    {
        "doc_id": "attention",
        "title": "Attention",
        "url": "https://example.org/attention",
        "topic": "deep-learning",
        "chunks": [
            "The attention mechanism lets a transformer weigh every token of the input when computing the "
            "representation of each token, using queries, keys and values."
        ],
    },
]


def tiny_chunks() -> list[Chunk]:
    """The tiny corpus as chunks with the metadata ingest writes."""
    from rag.types import make_chunk_id

    chunks = []
    for doc in TINY_DOCS:
        for position, text in enumerate(doc["chunks"]):
            chunks.append(
                Chunk(
                    id=make_chunk_id(doc["doc_id"], text),
                    doc_id=doc["doc_id"],
                    text=text,
                    section="",
                    position=position,
                    metadata={
                        "title": doc["title"],
                        "url": doc["url"],
                        "source": doc["url"],
                        "topic": doc["topic"],
                        "n_chunks": len(doc["chunks"]),
                    },
                )
            )
    return chunks


def fill_tiny_store(settings: Any, embedder: Any) -> None:
    """Write the tiny corpus into the Chroma store of ``settings.data_dir``."""
    from rag.store import ChunkStore, corpus_version_of

    store = ChunkStore.from_settings(settings, embedder)
    chunks = tiny_chunks()
    store.upsert(chunks, embedder.embed_documents([c.indexed_text for c in chunks]))
    store.set_corpus_version(corpus_version_of(store.all_ids()))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """A data dir holding the tiny corpus (shared read-only by the integration tests)."""
    from rag.config import Settings

    data_dir = tmp_path_factory.mktemp("tiny") / "data"
    fill_tiny_store(Settings(data_dir=data_dir, torch_threads=1), embedder)
    return data_dir


@pytest.fixture
def tiny_settings(tiny_data_dir: Path) -> Any:
    """Settings over the tiny corpus (extractive answers, one torch thread)."""
    from rag.config import Settings

    return Settings(
        data_dir=tiny_data_dir, torch_threads=1, generator="extractive", retriever="hybrid"
    )


@pytest.fixture
def real_rag(tiny_settings: Any, embedder: Any) -> Any:
    """A real pipeline over the tiny corpus."""
    from rag.pipeline import RAG

    return RAG(tiny_settings, embedder=embedder)


# --- a scriptable fake pipeline ------------------------------------------------------------
def _citation(n: int = 1) -> Citation:
    return Citation(
        n=n,
        chunk_id="overfitting#1",
        source="https://example.org/overfitting",
        title="Overfitting",
        url="https://example.org/overfitting",
        quote="Overfitting happens when a model learns the noise in the training data.",
    )


@dataclass
class FakeRAG:
    """The RAG interface with scripted behaviour (tokens, failures, delays) and a record of
    calls and closed streams."""

    tokens: list[str] = field(
        default_factory=lambda: ["Overfitting ", "is ", "learning ", "noise ", "[1]."]
    )
    abstain: bool = False
    fail_after: int | None = None  # raise GenerationError after this many tokens
    token_delay_s: float = 0.0
    hang_after: int | None = None  # sleep hang_s after this many tokens
    hang_s: float = 5.0
    ready: bool = True
    ask_delay_s: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    closed: list[bool] = field(default_factory=list)  # one entry per finished stream: closed early?
    active: int = 0
    max_active: int = 0
    settings: Settings = field(default_factory=Settings)  # the app's (make_client sets it)
    server_models: list[str] = field(default_factory=list)  # what an inference server lists
    raise_on_ask: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retriever_names(self) -> list[str]:
        return ["dense", "bm25", "hybrid"]

    def generator_names(self) -> list[str]:
        return ["auto", "extractive", "local", "claude"]

    def adapter_names(self) -> list[str]:
        return ["my-adapter"]

    def openai_adapter_names(self) -> list[str]:
        return list(self.server_models)

    def is_ready(self) -> bool:
        return self.ready

    def document_summaries(self) -> list[dict[str, Any]]:
        return [
            {
                "doc_id": "overfitting",
                "title": "Overfitting",
                "source": "s",
                "url": "u",
                "topic": "ml",
                "chunks": 2,
            }
        ]

    def validate(self, request: AskRequest | ValidRequest) -> ValidRequest:
        """The core's own validation (rag.request.validate), with this fake's adapters."""
        if isinstance(request, ValidRequest):
            return request
        if not self.ready:
            raise EmptyIndexError("the index is empty")

        def check_adapter(adapter: str | None, generator: str) -> str | None:
            known = self.openai_adapter_names() if generator == "openai" else self.adapter_names()
            if adapter is not None and adapter not in known:
                raise UnknownNameError(f"unknown adapter {adapter!r}")
            return adapter

        return validate(request, self.settings, check_adapter)

    def search(
        self, query: str, *, k: int | None = None, retriever: str | None = None, filters: Any = None
    ) -> list[Hit]:
        self.validate(AskRequest(query, k=k, retriever=retriever, filters=filters))
        self.calls.append(
            {"op": "search", "query": query, "k": k, "retriever": retriever, "filters": filters}
        )
        chunk = Chunk(
            id="overfitting#1",
            doc_id="overfitting",
            text="Overfitting is ...",
            metadata={
                "title": "Overfitting",
                "url": "https://example.org/overfitting",
                "source": "s",
                "topic": "ml",
            },
        )
        return [Hit(chunk=chunk, score=0.9, rank=1, retriever=retriever or "hybrid")][: k or 5]

    def _answer(
        self, question: str, generator: str | None, retriever: str | None, adapter: str | None
    ) -> Answer:
        if self.abstain:
            return Answer(
                text="The documents do not cover this.",
                citations=[],
                abstained=True,
                generator=generator or "extractive",
                retriever=retriever or "hybrid",
                question=question,
                timings_ms={"retrieve": 1.0, "generate": 0.0, "total": 1.0},
            )
        return Answer(
            text="".join(self.tokens),
            citations=[_citation()],
            abstained=False,
            generator=generator or "extractive",
            retriever=retriever or "hybrid",
            adapter=adapter,
            question=question,
            timings_ms={"retrieve": 2.0, "generate": 3.0, "total": 5.0},
        )

    def _enter(self) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def _record(self, op: str, valid: ValidRequest) -> AskRequest:
        """Record what the API asked for (the request as sent, before defaults)."""
        asked = valid.request or AskRequest(valid.question)
        self.calls.append(
            {
                "op": op,
                "question": asked.question,
                "k": asked.k,
                "retriever": asked.retriever,
                "generator": asked.generator,
                "adapter": asked.adapter,
                "history": list(asked.history) or None,
                "strict": asked.strict,
                "filters": asked.filters,
            }
        )
        return asked

    def ask(self, request: AskRequest | ValidRequest | str, **options: Any) -> Answer:
        if isinstance(request, str):
            request = AskRequest(request, **options)
        asked = self._record("ask", self.validate(request))
        question, generator = asked.question, asked.generator
        retriever, adapter = asked.retriever, asked.adapter
        if self.raise_on_ask is not None:
            raise self.raise_on_ask
        self._enter()
        try:
            if self.ask_delay_s:
                time.sleep(self.ask_delay_s)
            if self.fail_after is not None:
                raise GenerationError("the generator broke")
            return self._answer(question, generator, retriever, adapter)
        finally:
            self._leave()

    def stream(self, request: AskRequest | ValidRequest | str, **options: Any) -> Iterator[Any]:
        if isinstance(request, str):
            request = AskRequest(request, **options)
        asked = self._record("stream", self.validate(request))
        question, generator = asked.question, asked.generator
        retriever, adapter = asked.retriever, asked.adapter
        return self._events(question, generator, retriever, adapter)

    def _events(
        self, question: str, generator: str | None, retriever: str | None, adapter: str | None
    ) -> Iterator[Any]:
        self._enter()
        finished = False
        try:
            if self.abstain:
                yield TokenEvent("The documents do not cover this.")
            else:
                for i, token in enumerate(self.tokens):
                    if self.fail_after is not None and i == self.fail_after:
                        raise GenerationError("the generator broke mid-answer")
                    if self.hang_after is not None and i == self.hang_after:
                        time.sleep(self.hang_s)
                    if self.token_delay_s:
                        time.sleep(self.token_delay_s)
                    yield TokenEvent(token)
            yield AnswerEvent(self._answer(question, generator, retriever, adapter))
            finished = True
        finally:
            self._leave()
            self.closed.append(not finished)


@pytest.fixture
def fake_rag() -> FakeRAG:
    return FakeRAG()


@pytest.fixture
def make_client(settings: Any, fake_rag: FakeRAG):
    """Build a TestClient over ``create_app`` (fake pipeline unless another is passed)."""
    from api.app import create_app

    clients: list[TestClient] = []

    def build(
        rag: Any = None, raise_server_exceptions: bool = False, **overrides: Any
    ) -> TestClient:
        app_settings = settings.model_copy(update=overrides) if overrides else settings
        fake_rag.settings = app_settings
        client = TestClient(
            create_app(app_settings, rag=rag if rag is not None else fake_rag),
            raise_server_exceptions=raise_server_exceptions,
        )
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE body (data JSON-decoded when possible)."""
    import json

    events = []
    for block in text.strip().split("\n\n"):
        event, data_lines = "message", []
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data_lines.append(line[6:])
        if not data_lines:
            continue
        data = "\n".join(data_lines)
        try:
            decoded: Any = json.loads(data)
        except ValueError:
            decoded = data
        events.append((event, decoded))
    return events
