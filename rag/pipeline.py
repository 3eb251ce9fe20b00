"""The :class:`RAG` pipeline. One short path, as named stages (see :meth:`RAG.ask`):

    validate → condense → retrieve → decide (abstain?) → generate → cite → verify → decide

Every front door (API, CLI, Slack, eval) builds a :class:`~rag.request.AskRequest` and
answers through it; abstention is decided only in rag.abstention.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from rag.abstention import (
    ABSTAIN_TEXT,
    ANSWER,
    AbstentionRule,
    Decision,
    decide_on_answer,
    decide_on_retrieval,
)
from rag.citations import (
    build_citations,
    clean_markers,
    drop_repeated_marker_lines,
    split_answer,
)
from rag.coverage import CoverageSignal
from rag.errors import EmptyIndexError, GenerationError, InvalidInputError, MlragError
from rag.request import AskRequest, ValidRequest, check_question, validate
from rag.shorthand import spell_out
from rag.types import Answer, AnswerEvent, Hit, StreamEvent, TokenEvent, Turn

if TYPE_CHECKING:
    from rag.answer_cache import AnswerCache
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.generation.base import Generator
    from rag.generation.registry import SharedResources
    from rag.retrieval.base import Retriever
    from rag.retrieval.registry import RetrievalContext
    from rag.store import ChunkStore

log = logging.getLogger(__name__)
T = TypeVar("T")


INDEX_RECHECK_S = 5.0  # how long a seen non-empty index is trusted before counting again
# Defining sentences the context cut keeps first for a "what is X?" question: a chunk may
# both introduce the term and spell it out ("LoRA is one of the most popular PEFT methods …",
# "Low-Rank Adaptation (LoRA) is a PEFT method that decomposes …").
MAX_DEFINITIONS_KEPT = 2


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@dataclass(frozen=True)
class Retrieval:
    """What the condense and retrieve stages found for a request."""

    query: str  # the standalone query that was searched (and that the generator answers)
    hits: list[Hit]
    signal: CoverageSignal | None  # None without hits
    retrieve_ms: float
    started: float  # perf_counter at the start of the request
    context: list[Hit] = dataclasses.field(default_factory=list)  # what the generator sees


def generator_history(valid: ValidRequest, retrieval: Retrieval) -> list[Turn] | None:
    """The earlier turns the generator is shown: none when the follow-up was condensed into a
    standalone query (the query then stands for the conversation; shown the history as well,
    the 1.5B model repeated its previous answer to "is there another way?", and the turns
    cost prefill), else the history as it is."""
    if not valid.history or retrieval.query != spell_out(valid.question):
        return None
    return list(valid.history)


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
        self._cache: AnswerCache | None = None
        self._index_seen_until = 0.0  # monotonic time until which the index is known non-empty

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

    def openai_adapter_names(self) -> list[str]:
        """Adapters (models) the inference server lists; [] without one configured."""
        if not self.settings.openai_base_url:
            return []
        return list(self.generator("openai").adapter_names())  # type: ignore[attr-defined]

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
    def validate(self, request: AskRequest | ValidRequest) -> ValidRequest:
        """``request`` validated (the one place requests are checked; see rag.request)."""
        if isinstance(request, ValidRequest):
            return request
        return validate(request, self.settings, self._check_adapter)

    def _check_adapter(self, adapter: str | None, generator: str) -> str | None:
        if adapter is None or adapter == "":
            return None
        if generator == "openai":
            # An adapter is a model the inference server lists (UnknownNameError otherwise).
            self.generator("openai").models.model_for(adapter)  # type: ignore[attr-defined]
            return adapter
        if generator != "local":
            raise InvalidInputError(
                f"adapters apply to the local generator only, not {generator!r}"
            )
        self.shared.local_manager().registry.path(adapter)  # UnknownNameError if absent
        return adapter

    def _require_index(self) -> None:
        # A non-empty index is remembered for a few seconds: counting the store on every
        # request was 3-5 % of a /v1/search request's time (py-spy, bench/api_load.py).
        if time.monotonic() < self._index_seen_until:
            return
        if not self.is_ready():
            raise EmptyIndexError("the index is empty: run `mlrag ingest` first")
        self._index_seen_until = time.monotonic() + INDEX_RECHECK_S

    @property
    def rule(self) -> AbstentionRule:
        """The retrieval-level abstention rule of the settings."""
        return AbstentionRule.from_settings(self.settings)

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

        query = check_question(query, self.settings.max_question_chars)
        name = check_retriever_name(retriever or self.settings.retriever)
        k = validate_k(k, self.settings)
        normalize_filters(filters)
        self._require_index()
        return self.retriever(name).search(spell_out(query), k, filters)

    # --- the answer path -----------------------------------------------------------------
    def ask(self, request: AskRequest | ValidRequest | str, **options: Any) -> Answer:
        """A grounded, cited answer, or an abstention when the corpus does not cover it.

        ``request`` is an :class:`AskRequest` (or a question with its fields as keyword
        options). Raises InvalidInputError / UnknownNameError for bad input, EmptyIndexError
        before anything is ingested, and GenerationError (or a subclass) when the generator
        fails.
        """
        valid = self.validate(_as_request(request, options))
        retrieval = self.retrieve(valid)  # condense, then search
        cached = self.cache.get(self._cache_key(valid, retrieval.query))
        if cached is not None:
            return self._timed(dataclasses.replace(cached, cached=True), retrieval, ANSWER, 0.0)
        decision = decide_on_retrieval(retrieval.signal, self.rule, len(retrieval.hits))
        if decision.abstain:
            return self._remember(valid, retrieval, self._abstained(valid, retrieval, decision))
        retrieval = self.select_context(valid, retrieval)
        started = time.perf_counter()
        try:
            raw = self.generator(valid.generator).generate(
                retrieval.query,
                retrieval.context,
                generator_history(valid, retrieval),
                valid.adapter,
            )
        except MlragError:
            raise
        except Exception as exc:  # noqa: BLE001 - any generator bug is a failed generation
            raise GenerationError(f"{valid.generator} generator failed: {exc}") from exc
        answer = self.finish(raw, valid, retrieval, _ms(time.perf_counter() - started))
        return self._remember(valid, retrieval, answer)

    def stream(
        self, request: AskRequest | ValidRequest | str, **options: Any
    ) -> Iterator[StreamEvent]:
        """Token events as the generator writes, then exactly one :class:`AnswerEvent` with the
        post-processed answer (whose text is authoritative: markers may be cleaned and
        sentences dropped by verification). Validation errors raise before the first event;
        a generator failure mid-stream raises GenerationError and no answer event follows."""
        valid = self.validate(_as_request(request, options))
        retrieval = self.retrieve(valid)
        return self._stream(valid, retrieval)

    # --- stages ----------------------------------------------------------------------------
    def condense(self, valid: ValidRequest) -> str:
        """The standalone query a follow-up stands for (the question itself without history):
        rewritten by the configured LLM when it can (``condense_with_model``), else by the
        heuristic condenser (rag.query_rewrite), which is also the fallback."""
        if not valid.history:
            return valid.question
        from rag.query_rewrite import condense_query, condense_with

        history = list(valid.history)
        rewrite = getattr(self.generator(valid.generator), "rewrite", None)
        if self.settings.condense_with_model and rewrite is not None:
            rewritten = condense_with(rewrite, valid.question, history)
            if rewritten:
                return rewritten
        return condense_query(valid.question, history)

    def retrieve(self, valid: ValidRequest) -> Retrieval:
        """Condense, spell out chat shorthand (rag.shorthand), search, put in the chunk that
        defines what a "what is X?" question asks about (rag.definitions), and read the
        coverage signals of the hits. The query built here is what the generator answers."""
        started = time.perf_counter()
        self._require_index()
        query = spell_out(self.condense(valid))
        hits = self.retriever(valid.retriever).search(query, valid.k, valid.filters)
        if self.settings.pin_definitions:
            from rag.definitions import with_definition

            index = self._context().lexical_index()
            hits = with_definition(query, hits, index, valid.filters)
        signal = self.coverage(query, hits) if hits else None
        ms = _ms(time.perf_counter() - started)
        return Retrieval(query, hits, signal, ms, started, context=list(hits))

    def select_context(self, valid: ValidRequest, retrieval: Retrieval) -> Retrieval:
        """The context the generator sees: for LLM generators (local, openai) the hits cut to
        their most relevant sentences within ``llm_context_tokens`` (rag.context); the
        extractive generator and Claude see whole chunks. A question about the user's own
        page sees only the page's chunks when any was retrieved: an answer from another page
        is declined anyway (:meth:`unsourced_page`), and the 1.5B model answered "what rate
        does the page use for dropout?" with spaCy's 0.25 beside the page's ``p=0.5``."""
        hits = retrieval.hits
        if self.asks_about_page(valid):
            page_topics = self.page_topics()
            hits = [hit for hit in hits if hit.chunk.topic in page_topics] or hits
        budget = self.settings.llm_context_tokens
        if budget <= 0 or valid.generator not in ("local", "openai"):
            return dataclasses.replace(retrieval, context=list(hits))
        from rag.context import context_for
        from rag.definitions import definitions_in

        first = definitions_in(retrieval.query, hits)[:MAX_DEFINITIONS_KEPT]
        context = context_for(
            retrieval.query, hits, self.embedder, self.shared.sentences, budget, first=first
        )
        return dataclasses.replace(retrieval, context=context)

    def page_topics(self) -> set[str]:
        """The topics of the user's own page: those ``source_boost`` favours."""
        return {topic for topic, boost in self.settings.source_boost.items() if boost > 1}

    def asks_about_page(self, valid: ValidRequest) -> bool:
        """Whether the question, or an earlier question of its conversation, asks what the
        user's own page says (rag.asked.asks_about_page)."""
        from rag.asked import asks_about_page

        questions = [valid.question, *(t.content for t in valid.history if t.role == "user")]
        return bool(self.page_topics()) and asks_about_page(" ".join(questions))

    def coverage(self, query: str, hits: list[Hit]) -> CoverageSignal:
        """The signals the abstention decision reads (see rag.coverage): the best query-to-hit
        similarity and the specific query terms that no hit contains."""
        from rag.coverage import corpus_terms, coverage_signal, ordinary_words

        if not hits:
            return CoverageSignal(-1.0)
        corpus = corpus_terms(self._context().lexical_index())
        vector = self.embedder.embed_query(query)
        vocabulary = ordinary_words(self.embedder)
        return coverage_signal(query, vector, hits, self.store, corpus, vocabulary)

    def finish(
        self, raw: Answer, valid: ValidRequest, retrieval: Retrieval, generate_ms: float
    ) -> Answer:
        """Cite and verify a generator's answer against the context it saw (invalid markers
        removed, invented specifics dropped, uncited claims cited, support scored; rag.verify),
        then decide whether it is an answer at all (rag.abstention)."""
        from rag.definitions import unnamed_term
        from rag.verify import cited_blocks, verify

        context, cache = retrieval.context, self.shared.sentences
        text, removed = clean_markers(raw.text, len(context))
        asked = " ".join([valid.question, retrieval.query, *(t.content for t in valid.history)])
        checked = verify(
            text,
            context,
            asked,
            self.embedder,
            self.settings.support_threshold,
            cache,
            query=retrieval.query,
        )
        grounding = checked.grounding
        decision = decide_on_answer(
            raw.text,
            raw.abstained,
            grounding.support,
            self.settings.answer_support_floor,
            valid.strict,
            grounding.strict_text,
            checked.invented,
            cites=any(sentence.numbers for sentence in grounding.sentences),
            unstated=[*checked.unstated, *self.unsourced_page(valid, checked.text, context)],
            # The question as asked: the heuristic condenser appends words of earlier turns
            # ("… StandardScaler KNNImputer"), which the cited block need not name.
            missing_terms=(
                *self.cited_missing_terms(
                    spell_out(valid.question), checked.text, context, retrieval.hits
                ),
                *unnamed_term(spell_out(valid.question), cited_blocks(checked.text, context)),
            ),
        )
        if decision.abstain:
            fields: dict[str, Any] = {}
            if decision.reason in ("unsupported", "invented", "uncited", "unstated"):
                fields = {
                    "unsupported": [*checked.empty, *checked.invented, *grounding.unsupported],
                    "removed_citations": removed,
                    "support": grounding.support,
                }
            return self._abstained(valid, retrieval, decision, generate_ms, **fields)
        text = drop_repeated_marker_lines(checked.text)
        if valid.strict and grounding.unsupported:
            text = grounding.strict_text
        answer = dataclasses.replace(
            raw,
            text=text.strip(),
            citations=build_citations(text, context, self.embedder, cache, retrieval.query),
            abstained=False,
            generator=valid.generator,
            retriever=valid.retriever,
            adapter=valid.adapter,
            question=valid.question,
            query=retrieval.query,
            unsupported=[*checked.empty, *checked.invented, *grounding.unsupported],
            removed_citations=removed,
            support=grounding.support,
            hits=list(context),
        )
        return self._timed(answer, retrieval, decision, generate_ms)

    def unsourced_page(self, valid: ValidRequest, text: str, context: list[Hit]) -> list[str]:
        """``["the page"]`` when the question (or an earlier question of the conversation)
        asks what the user's own page says — its topics are those ``source_boost`` favours —
        and the answer cites only other pages; else []. On dev, "what does
        print_trainable_parameters report for that model?", after a question about the
        page's LoRA example, was answered with the counts of another model from the peft docs."""
        from rag.verify import cited_hits

        if not self.asks_about_page(valid):
            return []
        page_topics = self.page_topics()
        cited = cited_hits(text, context)
        if not cited or any(hit.chunk.topic in page_topics for hit in cited):
            return []
        # The docs may state the page's own value ("torch.bfloat16" in the peft quantization
        # guide and in the page's config): an answer whose specifics a page block the model
        # saw states too is the page's answer.
        from rag.specifics import missing_specifics, specifics

        page_text = [hit.chunk.text for hit in context if hit.chunk.topic in page_topics]
        claims = " ".join(sentence.plain for sentence in split_answer(text))
        if page_text and specifics(claims) and not missing_specifics(claims, page_text):
            return []
        return ["the page"]

    def cited_missing_terms(
        self, question: str, text: str, context: list[Hit], hits: Sequence[Hit] = ()
    ) -> tuple[str, ...]:
        """The specific terms of ``question`` found in at most ``answer_term_max_df`` corpus
        chunks that the context or the retrieved ``hits`` name but none of the blocks ``text``
        cites contains (rag.coverage's rule, applied to the cited blocks; typos and shorthand
        are left to the retrieval rule; () when the check is off or nothing is cited). The
        hits count because the context is cut from them: "claude" named in a retrieved chunk
        the cut left out is still the thing asked about, and a block without it does not
        answer."""
        max_df = self.settings.answer_term_max_df
        if max_df < 0:
            return ()
        from rag.verify import cited_hits

        cited = cited_hits(text, context)
        if not cited:
            return ()
        from rag.coverage import corpus_terms, ordinary_words, uncovered_in_cited

        corpus = corpus_terms(self._context().lexical_index())
        vocabulary = ordinary_words(self.embedder)
        uncovered = uncovered_in_cited(question, cited, [*context, *hits], corpus, vocabulary)
        return tuple(word for word, df in uncovered if df <= max_df)

    # --- the answer cache --------------------------------------------------------------------
    @property
    def cache(self) -> AnswerCache:
        """Recent answers (see :class:`rag.answer_cache.AnswerCache`)."""

        def build() -> AnswerCache:
            from rag.answer_cache import AnswerCache

            return AnswerCache(self.settings.answer_cache_size)

        return self._once("_cache", build)

    def _cache_key(self, valid: ValidRequest, query: str) -> tuple[Any, ...]:
        """An answer depends on the condensed query, the answer settings and the corpus."""
        filters = tuple(sorted((valid.filters or {}).items()))
        return (
            query,
            valid.retriever,
            valid.generator,
            valid.adapter,
            valid.k,
            valid.strict,
            filters,
            self._corpus_version(),
        )

    def _corpus_version(self) -> str:
        """The ingested corpus's version (re-read at most every few seconds): a new ingest
        changes it, so cached answers of the old corpus are never served."""
        index = self._context().lexical_index()
        index.ensure_fresh()
        return str(index.version)

    def _remember(self, valid: ValidRequest, retrieval: Retrieval, answer: Answer) -> Answer:
        self.cache.put(self._cache_key(valid, retrieval.query), answer)
        return answer

    def _abstained(
        self,
        valid: ValidRequest,
        retrieval: Retrieval,
        decision: Decision,
        generate_ms: float = 0.0,
        **fields: Any,
    ) -> Answer:
        """The 'not covered' answer: no citations, no sources."""
        answer = Answer(
            text=ABSTAIN_TEXT,
            citations=[],
            abstained=True,
            generator=valid.generator,
            retriever=valid.retriever,
            adapter=valid.adapter,
            question=valid.question,
            query=retrieval.query,
            **fields,
        )
        return self._timed(answer, retrieval, decision, generate_ms)

    def _timed(
        self, answer: Answer, retrieval: Retrieval, decision: Decision, generate_ms: float
    ) -> Answer:
        # The generator's own detail (first_token, prefill, decode, token counts) is kept; the
        # pipeline's stage times replace its "generate".
        timings = {
            **answer.timings_ms,
            "retrieve": retrieval.retrieve_ms,
            "generate": generate_ms,
            "total": _ms(time.perf_counter() - retrieval.started),
        }
        signal = retrieval.signal
        missing = self.rule.missing_terms(signal) if signal is not None else ()
        log.info(
            "answer retriever=%s generator=%s k=%d abstained=%s reason=%s best_sim=%.3f missing_terms=%s citations=%d timings=%s",
            answer.retriever,
            answer.generator,
            len(retrieval.hits),
            answer.abstained,
            decision.reason or "-",
            signal.similarity if signal is not None else -1.0,
            ",".join(missing) or "-",
            len(answer.citations),
            timings,
        )
        return dataclasses.replace(answer, timings_ms=timings)

    def _stream(self, valid: ValidRequest, retrieval: Retrieval) -> Iterator[StreamEvent]:
        cached = self.cache.get(self._cache_key(valid, retrieval.query))
        if cached is not None:
            yield TokenEvent(cached.text)
            answer = dataclasses.replace(cached, cached=True)
            yield AnswerEvent(self._timed(answer, retrieval, ANSWER, 0.0))
            return
        decision = decide_on_retrieval(retrieval.signal, self.rule, len(retrieval.hits))
        if decision.abstain:
            yield TokenEvent(ABSTAIN_TEXT)
            answer = self._abstained(valid, retrieval, decision)
            yield AnswerEvent(self._remember(valid, retrieval, answer))
            return
        name = valid.generator
        retrieval = self.select_context(valid, retrieval)
        started = time.perf_counter()
        raw: Answer | None = None
        try:
            events = self.generator(name).stream(
                retrieval.query,
                retrieval.context,
                generator_history(valid, retrieval),
                valid.adapter,
            )
            for event in events:
                if isinstance(event, AnswerEvent):
                    if raw is not None:
                        raise GenerationError(f"{name} generator sent two answers")
                    raw = event.answer
                elif raw is None:
                    yield event
        except MlragError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream is a failed generation
            raise GenerationError(f"{name} generator failed mid-answer: {exc}") from exc
        if raw is None:
            raise GenerationError(f"{name} generator stopped without finishing its answer")
        answer = self.finish(raw, valid, retrieval, _ms(time.perf_counter() - started))
        yield AnswerEvent(self._remember(valid, retrieval, answer))


def _as_request(
    request: AskRequest | ValidRequest | str, options: dict[str, Any]
) -> AskRequest | ValidRequest:
    """``request`` itself, or an :class:`AskRequest` built from a question and its options."""
    if isinstance(request, AskRequest | ValidRequest):
        if options:
            raise TypeError("pass either a request object or a question with options")
        return request
    history = options.pop("history", None) or ()
    return AskRequest(request, history=tuple(history), **options)
