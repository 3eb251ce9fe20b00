"""The extractive generator: verbatim, cited, diverse sentences; comments and table rows as
answers; lexical + embedding scoring; separators that keep claims apart; streaming; speed."""

from __future__ import annotations

import dataclasses

import pytest

from rag.abstention import ABSTAIN_TEXT
from rag.citations import split_answer
from rag.config import Settings
from rag.generation.extractive import (
    MAX_EMBEDDED,
    ExtractiveGenerator,
    answer_tokens,
    asks_for_code,
    comment_quote,
    last_argument_start,
    question_overlap,
    stems,
    trim_to_commented_argument,
)
from rag.sentences import SentenceEmbeddings, split_sentences
from rag.types import AnswerEvent, Chunk, Hit, TokenEvent
from tests.rag.answering_corpus import INJECTION, hits_for


@pytest.fixture
def generator(embedder) -> ExtractiveGenerator:
    return ExtractiveGenerator(Settings(torch_threads=1).retrieval, embedder)


def _assert_verbatim_and_cited(text: str, hits) -> None:
    sentences = split_answer(text)
    assert sentences
    for sentence in sentences:
        assert len(sentence.numbers) == 1, sentence
        n = sentence.numbers[0]
        assert 1 <= n <= len(hits)
        # ``plain`` collapses runs of spaces (code lines keep theirs in the chunk).
        assert sentence.plain in " ".join(hits[n - 1].chunk.text.split()), sentence


def test_answer_is_verbatim_context_sentences_with_valid_markers(generator) -> None:
    hits = hits_for(
        "Optimization", "Evaluation Metrics", "Parameter-Efficient Fine-Tuning", "Regularization"
    )
    answer = generator.generate("Which metric is better for imbalanced fraud detection?", hits)
    assert not answer.abstained and answer.generator == "extractive" and answer.retriever == "dense"
    _assert_verbatim_and_cited(answer.text, hits)
    assert 1 <= len(split_answer(answer.text)) <= 2  # one or two sentences, not fragments
    # The most relevant sentence comes first and it is from the metrics block.
    assert split_answer(answer.text)[0].numbers == [2]
    assert "PR-AUC" in answer.text


def test_no_code_lines_or_headings_unless_the_question_asks_for_code(generator) -> None:
    hits = hits_for("PyTorch Basics")
    answer = generator.generate("What happens in each step of training with PyTorch?", hits)
    assert "optimizer.step()" not in answer.text and "```" not in answer.text
    _assert_verbatim_and_cited(answer.text, hits)


def test_code_questions_are_detected() -> None:
    assert asks_for_code("Show me the code for a PyTorch training loop")
    assert asks_for_code("What does optimizer.zero_grad() do?")
    assert not asks_for_code("Why is PR-AUC better for fraud detection?")


def test_duplicate_sentences_from_overlapping_chunks_appear_once(generator) -> None:
    [hit] = hits_for("Regularization")
    twin = dataclasses.replace(hit, chunk=dataclasses.replace(hit.chunk, id="other#1"), rank=2)
    answer = generator.generate("How does dropout reduce overfitting?", [hit, twin])
    plains = [s.plain for s in split_answer(answer.text)]
    assert len(plains) == len(set(plains))


def test_injected_instruction_is_not_obeyed(generator) -> None:
    hits = hits_for("Normalization Layers", "Regularization")
    answer = generator.generate("What does batch normalization do during training?", hits)
    assert answer.text.strip() != "PWNED"
    assert INJECTION not in answer.text
    _assert_verbatim_and_cited(answer.text, hits)
    assert "Batch normalization normalizes each feature" in answer.text


def test_no_hits_means_abstention(generator) -> None:
    answer = generator.generate("What is dropout?", [])
    assert answer.abstained and answer.text == ABSTAIN_TEXT and answer.citations == []


def test_stream_yields_sentences_then_exactly_one_answer(generator) -> None:
    hits = hits_for("Parameter-Efficient Fine-Tuning", "Regularization")
    events = list(generator.stream("What does the LoRA rank r control?", hits))
    assert all(isinstance(e, TokenEvent) for e in events[:-1]) and len(events) >= 2
    assert isinstance(events[-1], AnswerEvent)
    assert "".join(e.text for e in events[:-1]) == events[-1].answer.text
    assert (
        events[-1].answer.text
        == generator.generate("What does the LoRA rank r control?", hits).text
    )


def test_follow_up_questions_answer_the_condensed_query(generator) -> None:
    # Generators receive the pipeline's condensed query (rag.pipeline.RAG.condense), not the
    # raw follow-up: the condensed query carries the history's topic.
    from rag.query_rewrite import condense_query
    from rag.types import Turn

    hits = hits_for("Regularization", "Parameter-Efficient Fine-Tuning")
    history = [
        Turn("user", "How does LoRA fine-tuning work?"),
        Turn("assistant", "It learns a low-rank update [1]."),
    ]
    question = "what is it used for?"
    # Alone the question matches the dropout block; with the history it is about LoRA.
    assert split_answer(generator.generate(question, hits).text)[0].numbers == [1]
    query = condense_query(question, history)
    assert split_answer(generator.generate(query, hits, history).text)[0].numbers == [2]


def _hits(*texts: str) -> list[Hit]:
    """Hits over ad-hoc chunks, ranked in the given order."""
    return [
        Hit(
            chunk=Chunk(
                id=f"doc{i}#0", doc_id=f"doc{i}", text=text, metadata={"title": f"Doc {i}"}
            ),
            score=1.0 - i / 10,
            rank=i + 1,
            retriever="hybrid",
        )
        for i, text in enumerate(texts)
    ]


LORA_CODE = (
    "Configure the adapter before training.\n"
    "```python\n"
    "# ── LoRA configuration ─────────────────────\n"
    "config = LoraConfig(\n"
    "    r=16,  # rank — higher = more capacity, more params\n"
    "    lora_alpha=32,\n"
    ")\n"
    "```\n"
)
DROPOUT = (
    "Dropout randomly sets a fraction of activations to zero during training. This stops "
    "neurons from co-adapting and reduces overfitting."
)
TABLE = (
    "| Term | Meaning |\n"
    "|---|---|\n"
    "| Entropy | Decision tree splitting criterion (information gain) |\n"
    "| Gini | Impurity measure used by CART |\n"
)


def test_comment_quote_takes_the_words_of_a_comment_verbatim() -> None:
    lines = {s.text: s for s in split_sentences(LORA_CODE) if s.kind == "code"}
    banner = comment_quote(lines["# ── LoRA configuration ─────────────────────"])
    assert banner is None  # two words say nothing
    line = lines["r=16,  # rank — higher = more capacity, more params"]
    # Code with a trailing comment is quoted whole: the code names what the comment explains.
    assert comment_quote(line) == line
    text = "x = 1\n# ── Early stopping — stop when validation loss stops improving ───\n"
    [_, only] = split_sentences(text)
    quote = comment_quote(only)
    assert quote is not None
    assert quote.text == "Early stopping — stop when validation loss stops improving"
    assert text[quote.start : quote.end] == quote.text
    assert comment_quote(split_sentences("y = f(x)  # 2\n")[0]) is None


def test_a_code_comment_can_be_the_answer(generator) -> None:
    hits = _hits(DROPOUT, LORA_CODE)
    answer = generator.generate("What does the LoRA rank r control?", hits)
    assert "r=16,  # rank — higher = more capacity, more params [2]" in answer.text
    _assert_verbatim_and_cited(answer.text, hits)
    # Plain code lines are still kept out.
    assert "lora_alpha=32" not in answer.text


FLAT_LORA_CODE = (  # how the user's page renders code: a call flattened onto one line
    "lora_config = LoraConfig( task_type=TaskType.CAUSAL_LM, r=16,  # rank — higher = more "
    "capacity, more params\n"
    "model = get_peft_model(base_model, lora_config)\n"
)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("lora_config = LoraConfig( task_type=TaskType.CAUSAL_LM, r=16,", "r=16,"),
        ('cfg = dict(target_modules=["q", "v"],', 'target_modules=["q", "v"],'),
        ("lora_alpha=32,", None),  # the whole line already is the argument
        ("model = get_peft_model(base_model, lora_config)", None),  # not inside a call
        ("f(1, 2,", None),  # positional: nothing names it
        ("a == b,", None),
    ],
)
def test_last_argument_start(code: str, expected: str | None) -> None:
    start = last_argument_start(code)
    assert (code[start:] if start else None) == expected


def test_a_flattened_call_is_quoted_from_the_commented_argument(generator) -> None:
    [line, plain] = [s for s in split_sentences(FLAT_LORA_CODE) if s.kind == "code"]
    trimmed = trim_to_commented_argument(line)
    assert trimmed.text == "r=16,  # rank — higher = more capacity, more params"
    assert FLAT_LORA_CODE[trimmed.start : trimmed.end] == trimmed.text
    assert trim_to_commented_argument(plain) == plain
    hits = _hits(DROPOUT, FLAT_LORA_CODE)
    answer = generator.generate("What does the LoRA rank r control?", hits)
    # Scored as the whole line (it names LoraConfig), quoted from the argument on.
    assert "r=16,  # rank — higher = more capacity, more params [2]" in answer.text
    assert "task_type" not in answer.text
    _assert_verbatim_and_cited(answer.text, hits)


def test_sentences_from_the_users_page_get_the_source_bonus(embedder) -> None:
    settings = Settings(torch_threads=1, source_boost={"machine-learning": 2.0, "numpy": 0.5})
    generator = ExtractiveGenerator(settings.retrieval, embedder, preferred_source_bonus=0.1)
    assert generator.preferred_topics == {"machine-learning"}
    text = "Dropout randomly sets a fraction of activations to zero during training."
    hits = [
        Hit(
            chunk=Chunk(id=f"{topic}#0", doc_id=topic, text=text, metadata={"topic": topic}),
            score=1.0,
            rank=i + 1,
            retriever="hybrid",
        )
        for i, topic in enumerate(["numpy", "machine-learning"])
    ]
    by_block = {c.n: c.relevance for c in generator._candidates("What does dropout do?", hits)}
    # The same sentence: the page's copy scores higher by exactly the bonus.
    assert by_block[2] - by_block[1] == pytest.approx(0.1, abs=1e-6)


def test_a_worded_table_row_can_be_the_answer(generator) -> None:
    hits = _hits(TABLE, DROPOUT)
    answer = generator.generate("What does entropy have to do with decision trees?", hits)
    first = split_answer(answer.text)[0]
    assert first.plain == "| Entropy | Decision tree splitting criterion (information gain) |"
    assert first.numbers == [1]
    assert "| Term | Meaning |" not in answer.text


def test_unrelated_sentences_from_other_blocks_are_not_appended(generator) -> None:
    hits = hits_for("Evaluation Metrics", "Regularization", "Optimization", "PyTorch Basics")
    answer = generator.generate("Which metric is better for imbalanced fraud detection?", hits)
    assert {n for s in split_answer(answer.text) for n in s.numbers} == {1}


def test_question_words_match_across_possessives_and_inflections() -> None:
    assert question_overlap(stems("What does LoRA's r control?"), "LoRA adapters") > 0
    assert stems("trained models") == stems("train model")
    assert question_overlap(frozenset(), "anything") == 0.0


def test_pieces_without_a_full_stop_stay_separate_claims() -> None:
    pieces = [
        "Early stopping — stop when validation loss stops improving [2]",
        "Patience is the number of epochs to wait. [1]",
        "| Entropy | Decision tree splitting criterion (information gain) | [3]",
        "Gini is cheaper to compute. [3]",
    ]
    text = "".join(answer_tokens(pieces))
    claims = split_answer(text)
    assert [c.numbers for c in claims] == [[2], [1], [3], [3]]
    assert [c.plain for c in claims] == [" ".join(p.split()[:-1]) for p in pieces]
    # After the comment, around the table row; prose after prose shares a line.
    assert text.count("\n") == 3 and "wait. [1]\n|" in text


class _CountingSentences(SentenceEmbeddings):
    """Records how many sentences each answer embeds."""

    def __init__(self, embedder) -> None:
        super().__init__(embedder)
        self.batches: list[int] = []

    def embed_texts(self, texts):
        self.batches.append(len(texts))
        return super().embed_texts(texts)


def test_an_answer_embeds_at_most_max_embedded_sentences(embedder) -> None:
    sentences = _CountingSentences(embedder)
    generator = ExtractiveGenerator(Settings(torch_threads=1).retrieval, embedder, sentences)
    long_chunk = " ".join(f"Sentence number {i} talks about dropout rates." for i in range(40))
    hits = _hits(long_chunk, DROPOUT)
    answer = generator.generate("How does dropout reduce overfitting?", hits)
    assert sentences.batches == [MAX_EMBEDDED]
    # The answer sentence survives the cheap pre-selection among 40 look-alikes.
    assert "reduces overfitting" in answer.text


def test_the_sentence_that_defines_what_is_asked_leads_the_answer(generator) -> None:
    # "whats lora" was answered with LoRA-FA's and rank_pattern's lines from the first hits,
    # beside the guide's definition in the last one.
    options = Chunk(
        id="a#1",
        doc_id="a",
        text="LoRA training can be more effective and efficient using LoRA-FA with LoRA. "
        "By default, all layers targeted with LoRA will have the same rank r.",
    )
    guide = Chunk(
        id="b#0",
        doc_id="b",
        text="Low-Rank Adaptation (LoRA) is a PEFT method that decomposes a large matrix into "
        "two smaller low-rank matrices.",
    )
    hits = [Hit(options, 0.9, 1, "hybrid"), Hit(guide, 0.8, 2, "hybrid")]
    first = split_answer(generator.generate("whats lora", hits).text)[0]
    assert first.text.startswith(
        "Low-Rank Adaptation (LoRA) is a PEFT method"
    ) and first.numbers == [2]
