"""The :class:`RAG` pipeline: validate → condense → retrieve → abstain if irrelevant →
generate → citations → grounding. The API, the CLI and the evaluation all go through it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from rag.citations import build_citations, clean_markers
from rag.errors import EmptyIndexError, GenerationError, InvalidInputError, MlragError
from rag.grounding import assess
from rag.prompt import ABSTAIN_TEXT, is_abstention
from rag.relevance import RelevanceSignal
from rag.types import Answer, AnswerEvent, Hit, StreamEvent, TokenEvent, Turn

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.generation.base import Generator
    from rag.generation.registry import SharedResources
    from rag.retrieval.base import Retriever
    from rag.retrieval.registry import RetrievalContext
    from rag.store import ChunkStore

log = logging.getLogger(__name__)
T = TypeVar("T")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@dataclass(frozen=True)
class _Plan:
    """A validated request with its retrieval done."""

    question: str
    query: str  # the standalone query that was searched
    retriever: str
    generator: str  # concrete generator name
    adapter: str | None
    history: list[Turn] | None
    strict: bool
    hits: list[Hit]
    relevant: bool
    best_similarity: float
    missing_terms: tuple[str, ...]  # rare specific question terms the hits lack
    retrieve_ms: float
    started: float


class RAG:
    """Question answering over the ingested corpus. Cheap to create; the embedder, store,
    retrievers and generators load lazily, once, and are safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._store = store
        self._lock = threading.RLock()
        self._retrieval_context: RetrievalContext | None = None
        self._shared: SharedResources | None = None
        self._retrievers: dict[str, Retriever] = {}
        self._generators: dict[str, Generator] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RAG:
        """A pipeline over the data dir / Chroma server named by ``settings``."""
        return cls(settings)

    # --- shared resources ----------------------------------------------------------------
    def _once(self, attr: str, build: Callable[[], T]) -> T:
        """``self.<attr>``, built by ``build()`` the first time (once, even across threads)."""
        value = getattr(self, attr)
        if value is None:
            with self._lock:
                value = getattr(self, attr)
                if value is None:
                    value = build()
                    setattr(self, attr, value)
        return value

    @property
    def embedder(self) -> Embedder:
        """The embedding model wrapper (the model itself loads on first use)."""

        def build() -> Embedder:
            from rag.embeddings import Embedder

            return Embedder.from_settings(self.settings)

        return self._once("_embedder", build)

    @property
    def store(self) -> ChunkStore:
        """The chunk store (opened on first use)."""

        def build() -> ChunkStore:
            from rag.store import ChunkStore

            return ChunkStore.from_settings(self.settings, self.embedder)

        return self._once("_store", build)

    @property
    def shared(self) -> SharedResources:
        """Resources shared by the generators (embedder, sentence cache, local model)."""

        def build() -> SharedResources:
            from rag.generation.registry import SharedResources

            return SharedResources.create(self.settings, self.embedder)

        return self._once("_shared", build)

    def _context(self) -> RetrievalContext:
        def build() -> RetrievalContext:
            from rag.retrieval.registry import RetrievalContext

            return RetrievalContext(self.settings, self.embedder, self.store)

        return self._once("_retrieval_context", build)

    def retriever(self, name: str | None = None) -> Retriever:
        """The retriever called ``name`` (default: ``settings.retriever``), built once."""
        from rag.retrieval.registry import build_retriever, check_retriever_name

        name = check_retriever_name(name or self.settings.retriever)
        with self._lock:
            if name not in self._retrievers:
                self._retrievers[name] = build_retriever(name, self._context())
            return self._retrievers[name]

    def generator(self, name: str | None = None) -> Generator:
        """The generator called ``name`` (default: ``settings.generator``; ``auto`` resolved),
        built once."""
        from rag.generation.registry import build_generator, resolve_generator_name

        concrete = resolve_generator_name(name or self.settings.generator, self.settings)
        with self._lock:
            if concrete not in self._generators:
                self._generators[concrete] = build_generator(concrete, self.settings, self.shared)
            return self._generators[concrete]

    def warm_up(
        self,
        retrievers: tuple[str, ...] = ("hybrid",),
        generators: tuple[str, ...] = ("extractive",),
    ) -> None:
        """Load models and indexes now so the first request is not slow."""
        self.embedder.embed_query("warm up")
        if not self.is_ready():
            log.warning("index is empty; skipping retriever warm-up")
        else:
            for name in retrievers:
                self.retriever(name).search("warm up", 1)
        for name in generators:
            self.generator(name)

    # --- listings ------------------------------------------------------------------------
    def retriever_names(self) -> list[str]:
        """Retriever names a request may use."""
        from rag.retrieval.registry import RETRIEVER_NAMES

        return list(RETRIEVER_NAMES)

    def generator_names(self) -> list[str]:
        """Generator names a request may use (``auto`` first)."""
        from rag.generation.registry import GENERATOR_NAMES

        return list(GENERATOR_NAMES)

    def adapter_names(self) -> list[str]:
        """LoRA adapters the local generator can use."""
        return list(self.shared.local_manager().adapter_names())

    def is_ready(self) -> bool:
        """Whether anything has been ingested."""
        return self.store.count() > 0

    def document_summaries(self) -> list[dict[str, Any]]:
        """One entry per ingested document: doc_id, title, source, url, topic, chunks."""
        return [
            {
                "doc_id": info.doc_id,
                "title": info.title,
                "source": info.source,
                "url": info.url,
                "topic": info.topic,
                "chunks": info.stored_chunks,
            }
            for info in sorted(
                self.store.documents().values(), key=lambda i: (i.topic, i.title, i.doc_id)
            )
        ]

    # --- validation ----------------------------------------------------------------------
    def _question(self, question: Any) -> str:
        if not isinstance(question, str):
            raise InvalidInputError("the question must be a string")
        question = question.strip()
        if not question:
            raise InvalidInputError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise InvalidInputError(
                f"the question is {len(question)} characters long; the limit is {self.settings.max_question_chars}"
            )
        return question

    def _check_adapter(self, adapter: str | None, generator: str) -> str | None:
        if adapter is None or adapter == "":
            return None
        if generator != "local":
            raise InvalidInputError(
                f"adapters apply to the local generator only, not {generator!r}"
            )
        self.shared.local_manager().registry.path(adapter)  # UnknownNameError if absent
        return adapter

    def _require_index(self) -> None:
        if not self.is_ready():
            raise EmptyIndexError("the index is empty: run `mlrag ingest` first")

    # --- search --------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        k: int | None = None,
        retriever: str | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[Hit]:
        """The top ``k`` chunks for ``query`` from the named retriever."""
        from rag.retrieval.filters import normalize_filters
        from rag.retrieval.registry import check_retriever_name, validate_k

        query = self._question(query)
        name = check_retriever_name(retriever or self.settings.retriever)
        k = validate_k(k, self.settings)
        normalize_filters(filters)
        self._require_index()
        return self.retriever(name).search(query, k, filters)

    # --- answering -----------------------------------------------------------------------
    def _plan(
        self,
        question: str,
        *,
        k: int | None,
        retriever: str | None,
        generator: str | None,
        adapter: str | None,
        history: list[Turn] | None,
        strict: bool,
        filters: dict[str, Any] | None,
    ) -> _Plan:
        """Validate everything, then retrieve and judge relevance."""
        from rag.generation.registry import resolve_generator_name
        from rag.query_rewrite import condense_query
        from rag.retrieval.filters import normalize_filters
        from rag.retrieval.registry import check_retriever_name, validate_k

        started = time.perf_counter()
        question = self._question(question)
        retriever_name = check_retriever_name(retriever or self.settings.retriever)
        generator_name = resolve_generator_name(generator or self.settings.generator, self.settings)
        k = validate_k(k, self.settings)
        normalize_filters(filters)
        adapter = self._check_adapter(adapter, generator_name)
        self._require_index()

        query = condense_query(question, history) if history else question
        hits = self.retriever(retriever_name).search(query, k, filters)
        signal = self.relevance(query, hits)
        max_df = self.settings.abstain_term_max_df
        relevant = bool(hits) and signal.is_relevant(self.settings.abstain_threshold, max_df)
        return _Plan(
            question=question,
            query=query,
            retriever=retriever_name,
            generator=generator_name,
            adapter=adapter,
            history=history,
            strict=strict,
            hits=hits,
            relevant=relevant,
            best_similarity=signal.similarity,
            missing_terms=tuple(signal.missing_terms(max_df)),
            retrieve_ms=_ms(time.perf_counter() - started),
            started=started,
        )

    def relevance(self, query: str, hits: list[Hit]) -> RelevanceSignal:
        """The signals the abstention decision reads (see rag.relevance): the best query-to-hit
        similarity and the specific query terms that no hit contains."""
        from rag.relevance import corpus_terms, ordinary_words, relevance_signal

        if not hits:
            return RelevanceSignal(-1.0)
        corpus = corpus_terms(self._context().lexical_index())
        vector = self.embedder.embed_query(query)
        vocabulary = ordinary_words(self.embedder)
        return relevance_signal(query, vector, hits, self.store, corpus, vocabulary)

    def _abstain(self, plan: _Plan, generate_ms: float = 0.0, **fields: Any) -> Answer:
        """The 'not covered' answer: no citations, no sources."""
        answer = Answer(
            text=ABSTAIN_TEXT,
            citations=[],
            abstained=True,
            generator=plan.generator,
            retriever=plan.retriever,
            adapter=plan.adapter,
            question=plan.question,
            **fields,
        )
        return self._timed(answer, plan, generate_ms)

    def _timed(self, answer: Answer, plan: _Plan, generate_ms: float) -> Answer:
        timings = {
            "retrieve": plan.retrieve_ms,
            "generate": generate_ms,
            "total": _ms(time.perf_counter() - plan.started),
        }
        log.info(
            "answer retriever=%s generator=%s k=%d abstained=%s best_sim=%.3f missing_terms=%s citations=%d timings=%s",
            plan.retriever,
            plan.generator,
            len(plan.hits),
            answer.abstained,
            plan.best_similarity,
            ",".join(plan.missing_terms) or "-",
            len(answer.citations),
            timings,
        )
        return dataclasses.replace(answer, timings_ms=timings)

    def _finish(self, raw: Answer, plan: _Plan, generate_ms: float) -> Answer:
        """Post-process a generator's answer: markers, grounding, strict mode, citations."""
        if raw.abstained or is_abstention(raw.text):
            return self._abstain(plan, generate_ms)
        hits, cache = plan.hits, self.shared.sentences
        text, removed = clean_markers(raw.text, len(hits))
        grounding = assess(text, hits, self.embedder, self.settings.support_threshold, cache)
        if plan.strict and grounding.unsupported:
            text = grounding.strict_text
            if not text:
                return self._abstain(
                    plan,
                    generate_ms,
                    unsupported=grounding.unsupported,
                    removed_citations=removed,
                    support=grounding.support,
                )
        answer = dataclasses.replace(
            raw,
            text=text.strip(),
            citations=build_citations(text, hits, self.embedder, cache),
            abstained=False,
            generator=plan.generator,
            retriever=plan.retriever,
            adapter=plan.adapter,
            question=plan.question,
            unsupported=grounding.unsupported,
            removed_citations=removed,
            support=grounding.support,
            hits=list(hits),
        )
        return self._timed(answer, plan, generate_ms)

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        retriever: str | None = None,
        generator: str | None = None,
        adapter: str | None = None,
        history: list[Turn] | None = None,
        strict: bool = False,
        filters: dict[str, Any] | None = None,
    ) -> Answer:
        """A grounded, cited answer, or an abstention when the corpus does not cover it.

        Raises InvalidInputError / UnknownNameError for bad input, EmptyIndexError before
        anything is ingested, and GenerationError (or a subclass) when the generator fails.
        """
        plan = self._plan(
            question,
            k=k,
            retriever=retriever,
            generator=generator,
            adapter=adapter,
            history=history,
            strict=strict,
            filters=filters,
        )
        if not plan.relevant:
            return self._abstain(plan)
        generator_obj = self.generator(plan.generator)
        started = time.perf_counter()
        try:
            raw = generator_obj.generate(plan.question, plan.hits, plan.history, plan.adapter)
        except MlragError:
            raise
        except Exception as exc:  # noqa: BLE001 - any generator bug is a failed generation
            raise GenerationError(f"{plan.generator} generator failed: {exc}") from exc
        return self._finish(raw, plan, _ms(time.perf_counter() - started))

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        retriever: str | None = None,
        generator: str | None = None,
        adapter: str | None = None,
        history: list[Turn] | None = None,
        strict: bool = False,
        filters: dict[str, Any] | None = None,
    ) -> Iterator[StreamEvent]:
        """Token events as the generator writes, then exactly one :class:`AnswerEvent` with the
        post-processed answer (whose text is authoritative: markers may be cleaned and, when
        ``strict``, sentences dropped). Validation errors raise before the first event; a
        generator failure mid-stream raises GenerationError and no answer event follows."""
        plan = self._plan(
            question,
            k=k,
            retriever=retriever,
            generator=generator,
            adapter=adapter,
            history=history,
            strict=strict,
            filters=filters,
        )
        return self._stream(plan)

    def _stream(self, plan: _Plan) -> Iterator[StreamEvent]:
        if not plan.relevant:
            yield TokenEvent(ABSTAIN_TEXT)
            yield AnswerEvent(self._abstain(plan))
            return
        generator_obj = self.generator(plan.generator)
        started = time.perf_counter()
        raw: Answer | None = None
        try:
            for event in generator_obj.stream(plan.question, plan.hits, plan.history, plan.adapter):
                if isinstance(event, AnswerEvent):
                    if raw is not None:
                        raise GenerationError(f"{plan.generator} generator sent two answers")
                    raw = event.answer
                elif raw is None:
                    yield event
        except MlragError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream is a failed generation
            raise GenerationError(f"{plan.generator} generator failed mid-answer: {exc}") from exc
        if raw is None:
            raise GenerationError(
                f"{plan.generator} generator stopped without finishing its answer"
            )
        yield AnswerEvent(self._finish(raw, plan, _ms(time.perf_counter() - started)))
