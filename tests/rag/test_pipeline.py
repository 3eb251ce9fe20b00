"""The RAG pipeline: validation, retrieval, abstention, post-processing, streaming."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from rag.abstention import ABSTAIN_TEXT
from rag.citations import quoted_parts, split_answer
from rag.coverage import best_similarity
from rag.errors import EmptyIndexError, GenerationError, InvalidInputError, UnknownNameError
from rag.generation.extractive import ExtractiveGenerator
from rag.generation.registry import GENERATOR_NAMES, build_generator, resolve_generator_name
from rag.pipeline import RAG
from rag.store import ChunkStore
from rag.types import Answer, AnswerEvent, Hit, StreamEvent, TokenEvent, Turn
from tests.rag.answering_corpus import (
    answering_settings,
    build_store,
    corpus_chunks,
    make_answer_store,
    make_rag,
)

FRAUD = "Which metric should I use for imbalanced fraud detection, PR-AUC or ROC-AUC?"


@pytest.fixture(scope="module")
def answer_store(tmp_path_factory: pytest.TempPathFactory, embedder) -> ChunkStore:
    return make_answer_store(tmp_path_factory, embedder)


@pytest.fixture
def rag_pipeline(tmp_path, embedder, answer_store: ChunkStore) -> RAG:
    return make_rag(tmp_path / "data", embedder, answer_store)


class ScriptedGenerator:
    """A generator that returns a fixed text (and can fail mid-stream)."""

    name = "extractive"

    def __init__(self, text: str, fail_after_tokens: int | None = None) -> None:
        self.text = text
        self.fail_after_tokens = fail_after_tokens

    def generate(self, question: str, hits: list[Hit], history=None, adapter=None) -> Answer:
        return Answer(
            text=self.text, citations=[], abstained=False, generator=self.name, retriever=""
        )

    def stream(
        self, question: str, hits: list[Hit], history=None, adapter=None
    ) -> Iterator[StreamEvent]:
        for i, word in enumerate(self.text.split(" ")):
            if self.fail_after_tokens is not None and i == self.fail_after_tokens:
                raise ConnectionError("connection dropped")
            yield TokenEvent(word + " ")
        yield AnswerEvent(self.generate(question, hits))


def _use(rag: RAG, generator: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rag, "generator", lambda name=None: generator)


# --- answering ------------------------------------------------------------------------------
@pytest.mark.parametrize("retriever", ["dense", "bm25", "hybrid"])
def test_on_topic_question_gets_a_cited_grounded_answer(rag_pipeline: RAG, retriever: str) -> None:
    answer = rag_pipeline.ask(f"  {FRAUD} ", retriever=retriever)
    assert not answer.abstained and "PR-AUC" in answer.text
    assert (
        answer.question == FRAUD
        and answer.retriever == retriever
        and answer.generator == "extractive"
    )
    assert set(answer.timings_ms) >= {"retrieve", "generate", "total"}
    assert answer.timings_ms["total"] >= answer.timings_ms["retrieve"]
    assert answer.hits and len(answer.hits) <= rag_pipeline.settings.k
    assert answer.citations and answer.removed_citations == 0
    for citation in answer.citations:
        chunk_text = answer.hits[citation.n - 1].chunk.text
        assert all(part in chunk_text for part in quoted_parts(citation.quote))
    assert len(answer.support) == len(split_answer(answer.text)) and answer.unsupported == []
    assert answer.to_dict()["question"] == FRAUD


def test_off_topic_question_abstains_without_sources(rag_pipeline: RAG) -> None:
    answer = rag_pipeline.ask("What is the capital of Australia?")
    assert answer.abstained and answer.text == ABSTAIN_TEXT
    assert answer.citations == [] and answer.hits == []


def test_relevance_does_not_depend_on_the_retrievers_score_scale(rag_pipeline: RAG) -> None:
    query = rag_pipeline.embedder.embed_query(FRAUD)
    dense = rag_pipeline.search(FRAUD, retriever="dense", k=2)
    bm25 = rag_pipeline.search(FRAUD, retriever="bm25", k=2)
    assert dense[0].chunk.id == bm25[0].chunk.id and dense[0].score != bm25[0].score
    assert best_similarity(query, dense[:1], rag_pipeline.store) == pytest.approx(
        best_similarity(query, bm25[:1], rag_pipeline.store)
    )
    assert best_similarity(query, [], rag_pipeline.store) == -1.0


def test_filters_that_exclude_everything_abstain_instead_of_failing(rag_pipeline: RAG) -> None:
    answer = rag_pipeline.ask(FRAUD, filters={"topic": "no-such-topic"}, retriever="dense")
    assert answer.abstained and answer.citations == []


def test_filters_restrict_the_context(rag_pipeline: RAG) -> None:
    answer = rag_pipeline.ask("How do I reduce overfitting?", filters={"topic": "deep-learning"})
    assert answer.hits and {h.chunk.topic for h in answer.hits} == {"deep-learning"}


def test_history_condenses_the_query_before_retrieval(rag_pipeline: RAG, monkeypatch) -> None:
    retriever = rag_pipeline.retriever("hybrid")
    seen: list[str] = []
    original = retriever.search

    def spy(query: str, k: int, filters=None) -> list[Hit]:
        seen.append(query)
        return original(query, k, filters)

    monkeypatch.setattr(retriever, "search", spy)
    history = [
        Turn("user", "How does LoRA fine-tuning work?"),
        Turn("assistant", "It learns a low-rank update [1]."),
    ]
    answer = rag_pipeline.ask("and what about its rank?", history=history)
    rag_pipeline.ask("and what about its rank?")
    assert "LoRA" in seen[0] and seen[1] == "and what about its rank?"
    assert answer.question == "and what about its rank?"
    assert answer.hits[0].chunk.title == "Parameter-Efficient Fine-Tuning"


def test_the_generator_receives_the_condensed_query(rag_pipeline: RAG, monkeypatch) -> None:
    """A condensed follow-up reaches the generator alone: the query stands for the
    conversation (shown the history too, a small model repeats its previous answer)."""
    received: list[str] = []
    histories: list[object] = []

    class Recording(ScriptedGenerator):
        def generate(self, question: str, hits: list[Hit], history=None, adapter=None) -> Answer:
            received.append(question)
            histories.append(history)
            return super().generate(question, hits, history, adapter)

        def stream(self, question: str, hits: list[Hit], history=None, adapter=None):
            received.append(question)
            histories.append(history)
            return super().stream(question, hits, history, adapter)

    _use(rag_pipeline, Recording("LoRA learns a low-rank update [1]."), monkeypatch)
    history = [
        Turn("user", "How does LoRA fine-tuning work?"),
        Turn("assistant", "It learns a low-rank update [1]."),
    ]
    answer = rag_pipeline.ask("and what about its rank?", history=history)
    assert received and "LoRA" in received[0] and received[0] != "and what about its rank?"
    assert answer.query == received[0] and answer.question == "and what about its rank?"
    assert list(rag_pipeline.stream("and what about its rank?", history=history))
    assert received[-1] == received[0]  # streaming too
    assert len(histories) >= 2 and all(h is None for h in histories)  # ask and stream


def test_a_question_left_as_it_is_keeps_its_history_for_the_generator(
    rag_pipeline: RAG, monkeypatch
) -> None:
    """When condensing leaves the question unchanged, the turns are all the generator has."""
    histories: list[object] = []

    class Recording(ScriptedGenerator):
        def generate(self, question: str, hits: list[Hit], history=None, adapter=None) -> Answer:
            histories.append(history)
            return super().generate(question, hits, history, adapter)

    _use(rag_pipeline, Recording("LoRA learns a low-rank update [1]."), monkeypatch)
    monkeypatch.setattr(RAG, "condense", lambda self, valid: valid.question)
    history = [Turn("user", "Hi"), Turn("assistant", "Hello.")]
    rag_pipeline.ask("How does LoRA fine-tuning work?", history=history)
    assert histories == [history]


# --- post-processing of generator output ----------------------------------------------------
def test_invalid_markers_from_the_generator_are_removed_and_counted(
    rag_pipeline: RAG, monkeypatch
) -> None:
    _use(
        rag_pipeline,
        ScriptedGenerator(
            "PR-AUC focuses on the rare positive class [1][9]. It is better for fraud [12]."
        ),
        monkeypatch,
    )
    answer = rag_pipeline.ask(FRAUD, retriever="dense")
    assert answer.removed_citations == 2
    assert "[9]" not in answer.text and "[12]" not in answer.text
    assert [c.n for c in answer.citations] == [1]


def test_strict_mode_drops_unsupported_sentences(rag_pipeline: RAG, monkeypatch) -> None:
    text = (
        "PR-AUC focuses on the rare positive class and is the better metric for fraud [1]. "
        "Banks report PR-AUC to their regulators every quarter [1]."
    )
    # The second sentence is about the block it cites (support ~0.3) but not supported by it:
    # shown and flagged by default, dropped in strict mode. (One citing a block it has nothing
    # to do with is dropped either way: tests/rag/test_specifics.py.)
    _use(rag_pipeline, ScriptedGenerator(text), monkeypatch)
    lenient = rag_pipeline.ask(FRAUD, retriever="dense")
    strict = rag_pipeline.ask(FRAUD, retriever="dense", strict=True)
    assert "Banks" in lenient.text and lenient.unsupported == [
        "Banks report PR-AUC to their regulators every quarter."
    ]
    assert (
        "Banks" not in strict.text
        and strict.text.startswith("PR-AUC focuses")
        and not strict.abstained
    )
    assert strict.unsupported == lenient.unsupported and [c.n for c in strict.citations] == [1]


def test_sentences_with_invented_specifics_are_dropped_by_default(
    rag_pipeline: RAG, monkeypatch
) -> None:
    # The exact check (rag.verify): numbers and names found in neither the context nor the
    # question are invented, strict or not.
    text = (
        "PR-AUC focuses on the rare positive class and is the better metric for fraud [1]. "
        "The Eiffel Tower was completed in 1889 for the World's Fair [1]."
    )
    _use(rag_pipeline, ScriptedGenerator(text), monkeypatch)
    answer = rag_pipeline.ask(FRAUD, retriever="dense")
    assert not answer.abstained and answer.text.startswith("PR-AUC focuses")
    assert "Eiffel" not in answer.text
    assert answer.unsupported[0] == "The Eiffel Tower was completed in 1889 for the World's Fair."
    invented_only = ScriptedGenerator("The default threshold is 0.37 for DeepSpeed [1].")
    _use(rag_pipeline, invented_only, monkeypatch)
    assert rag_pipeline.ask(FRAUD, retriever="dense").abstained  # nothing left: not covered


def test_an_answer_that_states_nothing_is_an_abstention(rag_pipeline: RAG, monkeypatch) -> None:
    # A bare "No [1]" passed the support floor on the citation's cosine alone (no content word
    # to check): a near-miss question answered with a source. Now it is declined.
    for text in ("No [1]", "The best metric for fraud is [1]."):
        _use(rag_pipeline, ScriptedGenerator(text), monkeypatch)
        answer = rag_pipeline.ask(FRAUD, retriever="dense")
        assert answer.abstained and answer.citations == [], text
    _use(
        rag_pipeline,
        ScriptedGenerator("The metric to use is [2]. PR-AUC is the better metric for fraud [1]."),
        monkeypatch,
    )
    answer = rag_pipeline.ask(FRAUD, retriever="dense")
    assert (
        not answer.abstained
        and answer.text.startswith("PR-AUC")
        and answer.unsupported == ["The metric to use is."]
    )


def test_a_default_asked_for_is_answered_only_from_a_passage_stating_one(
    rag_pipeline: RAG, monkeypatch
) -> None:
    # The 1.5B model answered "what's the default batch size …?" with "64 [1]" from a
    # tutorial that sets batch_size = 64: the number is there, the default is not (rag.asked).
    _use(rag_pipeline, ScriptedGenerator("The rank r of a LoRA adapter is 8 [1]."), monkeypatch)
    asked_default = rag_pipeline.ask("What is the default rank r of a LoRA adapter?")
    assert asked_default.abstained and asked_default.citations == []
    assert asked_default.unsupported == []  # every sentence was fine; what was asked was not
    answered = rag_pipeline.ask("What rank r does a LoRA adapter use?")
    assert not answered.abstained and answered.citations


def test_cited_blocks_must_name_the_rare_terms_of_the_question(
    rag_pipeline: RAG, monkeypatch
) -> None:
    # answer_term_max_df: the retrieval rule's rare-term check, applied to the blocks cited.
    # "LoRA" is in the context (the LoRA block is retrieved) but not in the block cited.
    question = "Does LoRA stop neurons from co-adapting?"
    text = "Dropout stops neurons from co-adapting and reduces overfitting [1]."
    _use(rag_pipeline, ScriptedGenerator(text), monkeypatch)
    assert rag_pipeline.settings.answer_term_max_df == 10  # on by default
    answer = rag_pipeline.ask(question, retriever="dense")
    assert answer.abstained and answer.citations == []
    check_off = rag_pipeline.settings.model_copy(update={"answer_term_max_df": -1})
    monkeypatch.setattr(rag_pipeline, "settings", check_off)
    assert not rag_pipeline.ask(question, retriever="dense").abstained
    monkeypatch.setattr(
        rag_pipeline, "settings", check_off.model_copy(update={"answer_term_max_df": 10})
    )
    _use(
        rag_pipeline,
        ScriptedGenerator("The rank r controls the size of the update [1]."),
        monkeypatch,
    )
    on_topic = rag_pipeline.ask("What does the rank r control in LoRA?", retriever="dense")
    assert not on_topic.abstained and on_topic.citations[0].section == "LoRA"


def test_a_definition_comes_from_a_block_that_names_the_term(
    rag_pipeline: RAG, monkeypatch
) -> None:
    # By hand: "what is flash attention" got "Flash attention is a technique … [2]" citing
    # the page's line on self-attention, which never says "flash".
    text = "Early stopping is a technique that randomly sets activations to zero [1]."
    _use(rag_pipeline, ScriptedGenerator(text), monkeypatch)
    answer = rag_pipeline.ask("what is early stopping?", retriever="dense", k=1)
    assert answer.abstained and answer.citations == []
    _use(
        rag_pipeline,
        ScriptedGenerator("Dropout randomly sets activations to zero [1]."),
        monkeypatch,
    )
    named = rag_pipeline.ask("what is dropout?", retriever="dense", k=1)
    assert not named.abstained and named.citations[0].section == "Dropout"


def test_a_rare_term_named_by_a_retrieved_chunk_the_context_cut_left_out_counts(
    rag_pipeline: RAG,
) -> None:
    # The context is cut from the retrieved chunks: "claude" named only in a chunk the cut
    # left out is still what was asked about, and a cited block without it does not answer.
    chunks = {c.section: c for c in corpus_chunks()}
    dropout = Hit(chunks["Dropout"], 1.0, 1, "dense")
    lora = Hit(chunks["LoRA"], 0.9, 2, "dense")
    question, text = "Does LoRA stop neurons from co-adapting?", "Dropout does that [1]."
    assert rag_pipeline.cited_missing_terms(question, text, [dropout]) == ()
    assert rag_pipeline.cited_missing_terms(question, text, [dropout], [dropout, lora]) == ("lora",)


def test_a_question_about_the_page_is_answered_from_the_page(rag_pipeline: RAG) -> None:
    # On dev: "what does print_trainable_parameters report for that model?", after a question
    # about the page's LoRA example, was answered with another model's counts from the docs.
    from rag.request import AskRequest
    from rag.types import Chunk

    docs = Hit(corpus_chunks()[1], 1.0, 1, "dense")  # a linked page (topic "peft")
    page = Hit(Chunk(id="p#1", doc_id="p", text="r=16", metadata={"topic": "machine-learning"}), 0.9, 2, "dense")  # fmt: skip
    history = [Turn("user", "which LoRA config does the page use?"), Turn("assistant", "x [1].")]
    follow_up = rag_pipeline.validate(AskRequest("and its rank?", history=tuple(history)))
    assert rag_pipeline.unsourced_page(follow_up, "It uses r=8 [1].", [docs, page]) == ["the page"]
    assert rag_pipeline.unsourced_page(follow_up, "It uses r=16 [2].", [docs, page]) == []
    # The docs stating the page's own value: the page block the model saw states it too.
    assert rag_pipeline.unsourced_page(follow_up, "It uses r=16 [1].", [docs, page]) == []
    plain = rag_pipeline.validate(AskRequest("what rank does LoRA use?"))
    assert rag_pipeline.unsourced_page(plain, "It uses r=8 [1].", [docs, page]) == []


def test_a_question_about_the_page_sees_only_the_pages_chunks(rag_pipeline: RAG) -> None:
    # "what rate does the page use for dropout?" was answered with spaCy's 0.25 from a docs
    # block beside the page's p=0.5; an answer from another page would be declined anyway.
    from rag.pipeline import Retrieval
    from rag.request import AskRequest
    from rag.types import Chunk

    docs = Hit(corpus_chunks()[2], 1.0, 1, "dense")  # the linked "Dropout" docs
    page = Hit(Chunk(id="p#1", doc_id="p", text="nn.Dropout(p=0.5)", metadata={"topic": "machine-learning"}), 0.9, 2, "dense")  # fmt: skip
    for generator in ("extractive", "local"):
        about_page = rag_pipeline.validate(
            AskRequest("what rate does the page use for dropout?", generator=generator)
        )
        found = Retrieval(about_page.question, [docs, page], None, 0.0, 0.0, [docs, page])
        context = rag_pipeline.select_context(about_page, found).context
        assert [hit.chunk.id for hit in context] == ["p#1"]
        # With no chunk of the page retrieved, the question sees what was retrieved.
        only_docs = Retrieval(about_page.question, [docs], None, 0.0, 0.0, [docs])
        assert (
            rag_pipeline.select_context(about_page, only_docs).context[0].chunk.id == docs.chunk.id
        )
    plain = rag_pipeline.validate(AskRequest("what rate does dropout use?"))
    found = Retrieval(plain.question, [docs, page], None, 0.0, 0.0, [docs, page])
    assert len(rag_pipeline.select_context(plain, found).context) == 2


def test_a_what_is_question_gets_the_chunk_that_defines_the_term(tmp_path, embedder) -> None:
    from rag.request import AskRequest
    from rag.types import Chunk

    glossary = Chunk(
        id="g#0",
        doc_id="g",
        text="Bagging trains models on bootstrap samples. Boosting fits models in sequence. "
        "Early stopping ends training when validation loss stops improving. "
        "Low-Rank Adaptation (LoRA) is a method that trains two small matrices per layer.",
        section="Glossary",
        metadata={"title": "Glossary", "topic": "glossary", "url": "https://example.org/g"},
    )
    settings = answering_settings(tmp_path / "data")
    store = build_store(settings, embedder, [*corpus_chunks(), glossary])
    ids = {}
    for pin in (False, True):
        rag = make_rag(tmp_path / f"data-{pin}", embedder, store, pin_definitions=pin)
        found = rag.retrieve(rag.validate(AskRequest("whats lora", k=1)))
        ids[pin] = [hit.chunk.id for hit in found.hits]
    assert ids[False] != ["g#0"]  # the nearest chunk says what LoRA does, not what it is
    assert ids[True] == ["g#0"]


def test_history_words_a_condenser_adds_are_not_terms_the_cited_block_must_name(
    rag_pipeline: RAG, monkeypatch
) -> None:
    # The heuristic condenser appends words of earlier turns ("… LoRA"); the cited block
    # answers the question as asked and need not name them.
    _use(rag_pipeline, ScriptedGenerator("Dropout reduces overfitting [1]."), monkeypatch)
    history = [
        Turn("user", "What does LoRA freeze?"),
        Turn("assistant", "LoRA freezes the pretrained weights."),
    ]
    answer = rag_pipeline.ask("and what does dropout reduce?", history=history, retriever="dense")
    assert "LoRA" in answer.query and not answer.abstained


def test_uncited_claims_get_the_block_that_supports_them(rag_pipeline: RAG, monkeypatch) -> None:
    _use(
        rag_pipeline,
        ScriptedGenerator("PR-AUC is the better metric for imbalanced fraud detection."),
        monkeypatch,
    )
    answer = rag_pipeline.ask(FRAUD, retriever="dense")
    assert not answer.abstained and answer.citations and answer.text.endswith("].")


def test_strict_mode_abstains_when_nothing_is_supported(rag_pipeline: RAG, monkeypatch) -> None:
    _use(
        rag_pipeline, ScriptedGenerator("The Eiffel Tower was completed in 1889 [1]."), monkeypatch
    )
    answer = rag_pipeline.ask(FRAUD, retriever="dense", strict=True)
    assert answer.abstained and answer.text == ABSTAIN_TEXT and answer.citations == []


def test_generator_abstention_is_an_abstention(rag_pipeline: RAG, monkeypatch) -> None:
    _use(
        rag_pipeline,
        ScriptedGenerator("The context does not contain this information [1]."),
        monkeypatch,
    )
    answer = rag_pipeline.ask(FRAUD)
    assert answer.abstained and answer.text == ABSTAIN_TEXT and answer.citations == []


def test_generator_crash_is_a_generation_error(rag_pipeline: RAG, monkeypatch) -> None:
    class Broken(ScriptedGenerator):
        def generate(self, *args, **kwargs) -> Answer:
            raise RuntimeError("CUDA out of memory")

    _use(rag_pipeline, Broken(""), monkeypatch)
    with pytest.raises(GenerationError):
        rag_pipeline.ask(FRAUD)


# --- streaming ------------------------------------------------------------------------------
def test_stream_yields_tokens_then_exactly_one_final_answer(rag_pipeline: RAG) -> None:
    events = list(rag_pipeline.stream(FRAUD, retriever="dense"))
    assert isinstance(events[-1], AnswerEvent)
    assert sum(isinstance(e, AnswerEvent) for e in events) == 1
    assert all(isinstance(e, TokenEvent) for e in events[:-1]) and len(events) >= 2
    final = events[-1].answer
    assert final.citations and final.text == rag_pipeline.ask(FRAUD, retriever="dense").text


def test_stream_of_an_off_topic_question_abstains(rag_pipeline: RAG) -> None:
    events = list(rag_pipeline.stream("What is the capital of Australia?"))
    assert [type(e) for e in events] == [TokenEvent, AnswerEvent]
    assert events[-1].answer.abstained and events[-1].answer.citations == []


def test_stream_failure_mid_answer_raises_and_sends_no_answer(
    rag_pipeline: RAG, monkeypatch
) -> None:
    _use(
        rag_pipeline,
        ScriptedGenerator("PR-AUC is better for fraud [1].", fail_after_tokens=2),
        monkeypatch,
    )
    received: list[StreamEvent] = []
    with pytest.raises(GenerationError):
        for event in rag_pipeline.stream(FRAUD):
            received.append(event)
    assert len(received) == 2 and not any(isinstance(e, AnswerEvent) for e in received)


def test_stream_validates_before_the_first_event(rag_pipeline: RAG) -> None:
    with pytest.raises(InvalidInputError):
        rag_pipeline.stream("   ")


# --- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"question": ""}, InvalidInputError),
        ({"question": " \n\t "}, InvalidInputError),
        ({"question": "x" * 2001}, InvalidInputError),
        ({"question": FRAUD, "retriever": "nope"}, UnknownNameError),
        ({"question": FRAUD, "generator": "gpt-9"}, UnknownNameError),
        ({"question": FRAUD, "k": 0}, InvalidInputError),
        ({"question": FRAUD, "k": 51}, InvalidInputError),
        ({"question": FRAUD, "filters": {"colour": "red"}}, InvalidInputError),
        ({"question": FRAUD, "adapter": "my-adapter"}, InvalidInputError),  # extractive has none
        ({"question": FRAUD, "generator": "local", "adapter": "missing"}, UnknownNameError),
    ],
)
def test_invalid_requests_raise_typed_errors(rag_pipeline: RAG, kwargs: dict, error: type) -> None:
    question = kwargs.pop("question")
    with pytest.raises(error):
        rag_pipeline.ask(question, **kwargs)


def test_empty_index_raises(tmp_path, embedder) -> None:
    settings = answering_settings(tmp_path / "data", collection="empty")
    rag = RAG(settings, embedder=embedder, store=build_store(settings, embedder, chunks=[]))
    assert not rag.is_ready()
    with pytest.raises(EmptyIndexError):
        rag.ask(FRAUD)
    with pytest.raises(EmptyIndexError):
        rag.search(FRAUD)


# --- listings and registry ------------------------------------------------------------------
def test_listings(rag_pipeline: RAG) -> None:
    assert rag_pipeline.is_ready()
    assert {"dense", "bm25", "hybrid"} <= set(rag_pipeline.retriever_names())
    assert rag_pipeline.generator_names() == list(GENERATOR_NAMES)
    assert rag_pipeline.adapter_names() == []
    summaries = rag_pipeline.document_summaries()
    assert len(summaries) == 7
    assert set(summaries[0]) == {"doc_id", "title", "source", "url", "topic", "chunks"}
    assert {s["chunks"] for s in summaries} == {1}


def test_search_returns_ranked_hits(rag_pipeline: RAG) -> None:
    hits = rag_pipeline.search("dropout overfitting", k=2, retriever="dense")
    assert [h.rank for h in hits] == [1, 2] and hits[0].chunk.title == "Regularization"


def test_generators_are_built_once(rag_pipeline: RAG) -> None:
    assert rag_pipeline.generator("extractive") is rag_pipeline.generator("auto")
    assert isinstance(rag_pipeline.generator(), ExtractiveGenerator)


def test_auto_generator_resolution(settings) -> None:
    assert resolve_generator_name("auto", settings) == "extractive"
    keyed = settings.model_copy(update={"anthropic_api_key": SecretStr("sk-test")})
    assert resolve_generator_name("auto", keyed) == "claude"
    local = settings.model_copy(update={"offline_generator": "local"})
    assert resolve_generator_name("auto", local) == "local"
    assert resolve_generator_name("extractive", keyed) == "extractive"
    with pytest.raises(UnknownNameError):
        resolve_generator_name("gpt", settings)


def test_build_generator_by_name(settings, embedder) -> None:
    from rag.generation.registry import SharedResources

    shared = SharedResources.create(settings, embedder)
    assert isinstance(build_generator("auto", settings, shared), ExtractiveGenerator)
    with pytest.raises(UnknownNameError):
        build_generator("nope", settings, shared)


def test_warm_up_loads_the_named_pieces(rag_pipeline: RAG) -> None:
    rag_pipeline.warm_up(retrievers=("dense",), generators=("extractive",))
    assert "dense" in rag_pipeline._retrievers and "extractive" in rag_pipeline._generators


def test_claude_answers_go_through_the_same_post_processing(rag_pipeline: RAG) -> None:
    """The real Claude generator (SDK against a recorded transport) behind the pipeline: its
    [n] markers are cleaned, and the citations quote verbatim chunk sentences."""
    from rag.generation.claude import ClaudeGenerator
    from tests.rag.anthropic_fakes import (
        RecordingTransport,
        json_response,
        make_client,
        message_body,
    )

    body = message_body(
        "PR-AUC focuses on the rare positive class and suits fraud detection [1]. "
        "A random classifier scores the positive rate [1][8]."
    )
    client = make_client(RecordingTransport([json_response(body)]))
    settings = rag_pipeline.settings.model_copy(update={"anthropic_api_key": SecretStr("sk-test")})
    rag = RAG(settings, embedder=rag_pipeline.embedder, store=rag_pipeline.store)
    rag._generators["claude"] = ClaudeGenerator(settings, client=client)
    answer = rag.ask(FRAUD, retriever="dense", generator="auto")  # claude: a key is set
    assert answer.generator == "claude" and not answer.abstained
    assert answer.removed_citations == 1 and "[8]" not in answer.text
    [citation] = answer.citations
    assert citation.n == 1 and citation.quote in answer.hits[0].chunk.text
    assert citation.quote.startswith("PR-AUC, the area under the precision-recall curve")
    assert answer.unsupported == []


@pytest.mark.slow
def test_real_page_answers_and_abstains(tmp_path, embedder) -> None:
    """The user's ML page, ingested for real: a covered question is answered from it with
    verbatim quotes, off-topic questions stay below the abstention threshold."""
    from ingest.pipeline import run_ingest
    from rag.store import ChunkStore, make_chroma_client
    from tests.conftest import ML_PAGE

    sources = tmp_path / "sources.toml"
    sources.write_text(
        f'[[source]]\npath = "{ML_PAGE}"\ntitle = "Machine Learning"\n'
        'topic = "machine-learning"\nformat = "webtext"\n'
    )
    settings = answering_settings(tmp_path / "data")
    store = ChunkStore(make_chroma_client(settings), settings.collection, embedder)
    summary = run_ingest(settings, sources_file=sources, progress=False, store=store)
    assert not summary.failed
    rag = RAG(settings, embedder=embedder, store=store)
    answer = rag.ask("Which metric should I use for fraud detection with very imbalanced data?")
    assert not answer.abstained and "PR-AUC" in answer.text
    assert all(
        part in answer.hits[c.n - 1].chunk.text
        for c in answer.citations
        for part in quoted_parts(c.quote)
    )
    for question in ("What is the capital of Australia?", "How do I bake sourdough bread?"):
        assert rag.ask(question).abstained, question


def test_shared_resources_are_built_once_across_threads(tmp_path) -> None:
    import threading
    import time

    from rag.config import Settings

    rag = RAG(Settings(data_dir=tmp_path))
    builds: list[int] = []

    def build() -> object:
        builds.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while the first builds
        return object()

    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(rag._once("_shared", build)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert rag._once("_shared", build) is results[0] and len(builds) == 1


def test_openai_adapters_are_checked_against_the_servers_models(
    rag_pipeline: RAG, monkeypatch
) -> None:
    from rag.errors import UnknownNameError
    from rag.request import AskRequest

    class Models:
        def model_for(self, adapter: str | None) -> str:
            if adapter not in (None, "grounded-v3"):
                raise UnknownNameError(f"unknown adapter {adapter!r}; available: grounded-v3")
            return adapter or "base"

    class Server:
        models = Models()

        def adapter_names(self) -> list[str]:
            return ["grounded-v3"]

    monkeypatch.setattr(rag_pipeline, "generator", lambda name=None: Server())
    ok = rag_pipeline.validate(AskRequest("q?", generator="openai", adapter="grounded-v3"))
    assert (ok.generator, ok.adapter) == ("openai", "grounded-v3")
    with pytest.raises(UnknownNameError, match="available: grounded-v3"):
        rag_pipeline.validate(AskRequest("q?", generator="openai", adapter="nope"))
    assert rag_pipeline.openai_adapter_names() == []  # no inference server configured


def test_repeated_questions_come_from_the_cache_until_the_corpus_changes(
    tmp_path, embedder, answer_store: ChunkStore, monkeypatch
) -> None:
    rag = make_rag(tmp_path / "data", embedder, answer_store, answer_cache_size=8)
    calls: list[str] = []

    class Counting(ScriptedGenerator):
        def generate(self, question: str, hits: list[Hit], history=None, adapter=None) -> Answer:
            calls.append(question)
            return super().generate(question, hits, history, adapter)

    _use(rag, Counting("PR-AUC is the better metric for fraud [1]."), monkeypatch)
    first = rag.ask(FRAUD, retriever="dense")
    second = rag.ask(FRAUD, retriever="dense")
    assert len(calls) == 1 and not first.cached and second.cached
    assert second.text == first.text and rag.cache.hits == 1
    rag.ask(FRAUD, retriever="dense", k=3)  # other answer settings: another entry
    assert len(calls) == 2
    # A new corpus version (an ingest) makes older entries unreachable.
    monkeypatch.setattr(rag, "_corpus_version", lambda: "after-an-ingest")
    rag.ask(FRAUD, retriever="dense")
    assert len(calls) == 3


def test_a_capable_generator_condenses_follow_ups_itself(rag_pipeline: RAG, monkeypatch) -> None:
    class Rewriting(ScriptedGenerator):
        def rewrite(self, messages: list[dict[str, str]], max_tokens: int) -> str:
            return "What rank does LoRA use?"

    _use(rag_pipeline, Rewriting("LoRA learns a low-rank update [1]."), monkeypatch)
    history = [
        Turn("user", "How does LoRA fine-tuning work?"),
        Turn("assistant", "It learns a low-rank update [1]."),
    ]
    answer = rag_pipeline.ask("and its rank?", history=history)
    assert answer.query == "What rank does LoRA use?"
    rag_pipeline.settings = rag_pipeline.settings.model_copy(update={"condense_with_model": False})
    heuristic = rag_pipeline.ask("and its rank?", history=history)
    assert heuristic.query != "What rank does LoRA use?" and "LoRA" in heuristic.query


def test_an_answer_no_block_supports_is_never_shown(rag_pipeline: RAG, monkeypatch) -> None:
    # No sentence cites a block and no block supports one well enough to be cited: declined,
    # whatever the support floor (0 here, so only the citation rule can decline it).
    rag_pipeline.settings = rag_pipeline.settings.model_copy(update={"answer_support_floor": 0.0})
    _use(
        rag_pipeline,
        ScriptedGenerator("Cats are wonderful companions for everyone who lives alone."),
        monkeypatch,
    )
    answer = rag_pipeline.ask(FRAUD, retriever="dense")
    assert answer.abstained and answer.citations == []


def test_typed_shorthand_is_spelled_out_before_search_and_answer(
    rag_pipeline: RAG, monkeypatch
) -> None:
    """The searched query, the generator's question and Answer.query are the spelled-out
    question; the answer still reports what the user typed."""
    retriever = rag_pipeline.retriever("hybrid")
    seen: list[str] = []
    original = retriever.search

    def spy(query: str, k: int, filters=None) -> list[Hit]:
        seen.append(query)
        return original(query, k, filters)

    monkeypatch.setattr(retriever, "search", spy)
    answer = rag_pipeline.ask("whats the diff between precision n recall pls")
    assert seen == ["what is the difference between precision and recall"]
    assert answer.query == seen[0]
    assert answer.question == "whats the diff between precision n recall pls"


def test_the_answer_checks_added_by_hand_are_part_of_every_answer(
    rag_pipeline: RAG, monkeypatch
) -> None:
    # rag.verify's yes/no restatement and leaning-sentence checks, and the lone marker line
    # (rag.citations), run on the answer a user gets, not only in their unit tests.
    question = "Is PR-AUC better than ROC-AUC for imbalanced fraud detection?"
    _use(rag_pipeline, ScriptedGenerator("Yes, PR-AUC is better than ROC-AUC [1]."), monkeypatch)
    assert rag_pipeline.ask(question).abstained

    invented = (
        "Use `sklearn.metrics.fraud_auc_score` [1]. It focuses on the rare positive class [1]."
    )
    _use(rag_pipeline, ScriptedGenerator(invented), monkeypatch)
    assert rag_pipeline.ask(FRAUD).abstained  # the second sentence leaned on the invented one

    unbacked = "PR-AUC is the metric for fraud by default [1]."  # the block states no default
    _use(rag_pipeline, ScriptedGenerator(unbacked), monkeypatch)
    assert rag_pipeline.ask(FRAUD).abstained

    fenced = "PR-AUC focuses on the rare positive class [1].\n```\nPR-AUC\n```\n\n[1]"
    _use(rag_pipeline, ScriptedGenerator(fenced), monkeypatch)
    answer = rag_pipeline.ask(FRAUD)
    assert not answer.abstained and answer.text.endswith("```")
