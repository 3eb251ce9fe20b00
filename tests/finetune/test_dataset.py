"""SFT examples: served prompt format, correct [n] citations, RAFT-style evidence insertion,
abstention targets, seeding, length fitting, file errors and answer-only labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from finetune.dataset import (
    IGNORE_INDEX,
    EvidenceIndex,
    ExampleBuilder,
    QAItem,
    add_marker,
    cited_answer,
    contains_quote,
    length_checker,
    load_qa_items,
    read_examples,
    tokenize_example,
    write_examples,
)
from rag.abstention import ABSTAIN_TEXT
from rag.errors import InvalidInputError
from rag.generation.local import chat_messages
from rag.types import Chunk, Hit
from tests.finetune.conftest import ITEMS, word_overlap_search, write_jsonl
from tests.rag.tiny_models import build_tiny_tokenizer

BLOCK = re.compile(r"^\[(\d+)\] ", re.M)


def items() -> list[QAItem]:
    return [QAItem.model_validate({"split": "train", **row}) for row in ITEMS]


def blocks_of(example_user: str) -> dict[int, str]:
    """Context block number → block text, parsed back from the user message."""
    context = example_user.split("<context>\n", 1)[1].split("\n</context>", 1)[0]
    parts = re.split(r"(?m)^\[(\d+)\] ", context)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_answer_targets_cite_the_block_holding_the_evidence(search, evidence_index) -> None:
    examples = ExampleBuilder(search, evidence_index, k=4, seed=0, removal_fraction=0).build(
        items()
    )
    answers = [e for e in examples if e.kind == "answer"]
    assert len(answers) == 7
    by_id = {i.id: i for i in items()}
    for example in answers:
        item = by_id[example.id]
        blocks = blocks_of(example.messages[1]["content"])
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", example.target)}
        assert cited, example.target
        for n in cited:
            assert any(contains_quote(blocks[n], q) for q in item.evidence), (example.id, n)
        # Every sentence carries a marker and the answer text is kept.
        assert re.sub(r" \[\d+\]", "", example.target) == item.answer


def test_examples_read_the_context_serving_gives_the_model(
    search, evidence_index, embedder
) -> None:
    """With the serving cut (rag.context.context_for), examples show the cut blocks — the
    prompt a served model reads — with the evidence kept and cited by its new number."""
    from rag.context import context_for
    from rag.sentences import SentenceEmbeddings

    cache = SentenceEmbeddings(embedder)

    def cut(question: str, hits: list[Hit], keep) -> list[Hit]:
        return context_for(question, hits, embedder, cache, 60, keep)

    builder = ExampleBuilder(search, evidence_index, k=4, seed=0, removal_fraction=0, context=cut)
    examples = builder.build(items())
    whole = ExampleBuilder(search, evidence_index, k=4, seed=0, removal_fraction=0).build(items())
    assert [e.id for e in examples] == [e.id for e in whole]
    by_id = {i.id: i for i in items()}
    shorter = 0
    for example, full in zip(examples, whole, strict=True):
        user = example.messages[1]["content"]
        shorter += len(user) < len(full.messages[1]["content"])
        if example.kind != "answer":
            continue
        blocks = blocks_of(user)
        for n in {int(n) for n in re.findall(r"\[(\d+)\]", example.target)}:
            assert any(contains_quote(blocks[n], q) for q in by_id[example.id].evidence)
    assert shorter >= len(examples) // 2  # the cut applies to most examples


def test_prompt_is_exactly_the_served_prompt(search, evidence_index) -> None:
    example = ExampleBuilder(search, evidence_index, seed=0, removal_fraction=0).build(items()[:1])[
        0
    ]
    hits = search(items()[0].question, 4)
    assert example.messages[:-1] == chat_messages(items()[0].question, hits)
    assert example.messages[-1]["role"] == "assistant"


def test_missed_evidence_is_inserted_replacing_a_distractor(chunks) -> None:
    evidence = next(c for c in chunks if c.text.startswith("Machine learning"))
    others = [c for c in chunks if c.id != evidence.id]
    blind = word_overlap_search(others)  # retrieval never finds the evidence chunk
    positions = set()
    for seed in range(8):
        builder = ExampleBuilder(blind, EvidenceIndex(chunks), k=4, seed=seed, removal_fraction=0)
        example = builder.build([items()[3]])[0]
        blocks = blocks_of(example.messages[1]["content"])
        assert len(blocks) == 4 and builder.stats.evidence_inserted == 1
        where = [n for n, text in blocks.items() if evidence.text in text]
        assert len(where) == 1 and f"[{where[0]}]" in example.target
        positions.add(where[0])
    assert len(positions) > 1  # a random position, not always first or last


def test_item_whose_evidence_is_nowhere_is_skipped(chunks) -> None:
    item = QAItem(
        id="x",
        question="What is r?",
        answer="A rank.",
        evidence=["not in any chunk"],
        answerable=True,
    )
    builder = ExampleBuilder(word_overlap_search(chunks), EvidenceIndex(chunks), removal_fraction=0)
    assert builder.build([item]) == [] and builder.stats.skipped == ["x"]


def test_abstain_targets_for_unanswerable_and_removed_evidence(search, evidence_index) -> None:
    builder = ExampleBuilder(search, evidence_index, k=4, seed=0, removal_fraction=1.0)
    examples = builder.build(items())
    unanswerable = [e for e in examples if e.kind == "abstain"]
    removed = [e for e in examples if e.kind == "abstain_removed"]
    assert [e.id for e in unanswerable] == ["t-6"]
    assert len(removed) == 7 == builder.stats.abstain_removed
    by_id = {i.id: i for i in items()}
    for example in unanswerable + removed:
        assert example.target == ABSTAIN_TEXT
    for example in removed:
        item = by_id[example.id.split("#")[0]]
        text = example.messages[1]["content"]
        assert not any(contains_quote(text, q) for q in item.evidence)


def test_answerable_only_leaves_out_the_unanswerable_items(search, evidence_index) -> None:
    every = ExampleBuilder(search, evidence_index, k=4, seed=0, removal_fraction=0.4)
    answerable = ExampleBuilder(
        search, evidence_index, k=4, seed=0, removal_fraction=0.4, unanswerable=False
    )
    all_examples, answerable_examples = every.build(items()), answerable.build(items())
    assert [e.id for e in all_examples if e.kind == "abstain"] == ["t-6"]
    assert answerable.stats.unanswerable_left_out == 1 and answerable.stats.abstain == 0
    # Everything else is the same, removed-evidence examples included (same seed).
    assert [e.to_dict() for e in answerable_examples] == [
        e.to_dict() for e in all_examples if e.kind != "abstain"
    ]


def test_removal_share_is_seeded(search, evidence_index) -> None:
    def removed(seed: int) -> list[str]:
        out = ExampleBuilder(search, evidence_index, seed=seed, removal_fraction=0.4).build(items())
        return [e.id for e in out if e.kind == "abstain_removed"]

    assert removed(3) == removed(3)
    assert any(removed(s) != removed(3) for s in range(4, 10))


def test_distractors_are_dropped_to_fit_but_evidence_stays(search, evidence_index) -> None:
    tokenizer = build_tiny_tokenizer()
    full = ExampleBuilder(search, evidence_index, removal_fraction=0).build(items()[:1])[0]
    length = len(tokenize_example(full, tokenizer, 10_000).input_ids)
    builder = ExampleBuilder(
        search, evidence_index, removal_fraction=0, fits=length_checker(tokenizer, length - 20)
    )
    fitted = builder.build(items()[:1])[0]
    blocks = blocks_of(fitted.messages[1]["content"])
    assert len(blocks) < 4 and builder.stats.distractors_dropped >= 1
    assert len(tokenize_example(fitted, tokenizer, 10_000).input_ids) <= length - 20
    n = int(re.search(r"\[(\d+)\]", fitted.target).group(1))
    assert contains_quote(blocks[n], items()[0].evidence[0])


def test_labels_cover_only_the_answer_and_end_of_turn(search, evidence_index) -> None:
    tokenizer = build_tiny_tokenizer()
    example = ExampleBuilder(search, evidence_index, removal_fraction=0).build(items()[:1])[0]
    tokens = tokenize_example(example, tokenizer, 4096)
    assert tokens is not None and len(tokens.labels) == len(tokens.input_ids)
    first = next(i for i, label in enumerate(tokens.labels) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in tokens.labels[:first])
    assert tokens.labels[first:] == tokens.input_ids[first:]
    # The prompt ends with the generation prompt; the labelled part is the answer + eos.
    assert tokenizer.decode(tokens.input_ids[:first]).rstrip().endswith("<|assistant|>")
    answer = tokenizer.decode(tokens.labels[first:], skip_special_tokens=True)
    expected = tokenizer.decode(
        tokenizer(example.target, add_special_tokens=False).input_ids, skip_special_tokens=True
    )
    assert answer.strip() == expected.strip()
    assert tokens.labels[-1] == tokenizer.eos_token_id
    assert tokenize_example(example, tokenizer, first) is None  # too long → left out


def test_cited_answer_with_two_evidence_blocks() -> None:
    answer = "Use PR-AUC for imbalanced data. ROC-AUC is threshold-independent."
    evidence = [
        "PR-AUC = precision-recall area, better for imbalanced data",
        "ROC-AUC is threshold-independent",
    ]
    assert cited_answer(answer, evidence, [2, 4]) == (
        "Use PR-AUC for imbalanced data [2]. ROC-AUC is threshold-independent [4]."
    )
    assert add_marker("No final stop", [1, 3]) == "No final stop [1][3]"


def test_malformed_and_empty_files_name_the_line(tmp_path: Path) -> None:
    good = json.dumps({**ITEMS[0], "split": "train"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:3: not valid JSON"):
        load_qa_items(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(
        good + "\n" + json.dumps({"id": "y", "question": "q?"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(InvalidInputError, match=r"missing.jsonl:2: answerable"):
        load_qa_items(missing)
    no_evidence = write_jsonl(tmp_path / "noev.jsonl", [{**ITEMS[0], "evidence": []}])
    with pytest.raises(InvalidInputError, match=r"noev.jsonl:1: .*needs an answer and evidence"):
        load_qa_items(no_evidence)
    dup = write_jsonl(tmp_path / "dup.jsonl", [ITEMS[0], ITEMS[0]])
    with pytest.raises(InvalidInputError, match=r"dup.jsonl:2: duplicate id"):
        load_qa_items(dup)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="empty"):
        load_qa_items(empty)


def test_examples_round_trip_through_jsonl(tmp_path: Path, search, evidence_index) -> None:
    examples = ExampleBuilder(search, evidence_index, removal_fraction=0.5).build(items())
    write_examples(examples, tmp_path / "sft.jsonl")
    assert read_examples(tmp_path / "sft.jsonl") == examples
    (tmp_path / "broken.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "x"}]}\n', encoding="utf-8"
    )
    with pytest.raises(InvalidInputError, match="broken.jsonl:1"):
        read_examples(tmp_path / "broken.jsonl")
    # Examples store their question; an old file without it is refused, never parsed apart.
    old_format = {"id": "x", "messages": [*examples[0].messages]}
    (tmp_path / "old.jsonl").write_text(json.dumps(old_format) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="old.jsonl:1: .*no 'question' field"):
        read_examples(tmp_path / "old.jsonl")
    assert all(
        e.question == next(i.question for i in items() if e.id.startswith(i.id)) for e in examples
    )


def test_evidence_index_prefers_the_item_source() -> None:
    same = "The learning rate controls the step size."
    chunks = [
        Chunk(id=f"{s}#1", doc_id=s, text=same, metadata={"source": s}) for s in ("a.md", "b.md")
    ]
    index = EvidenceIndex(chunks)
    assert index.find("learning rate controls", prefer_source="b.md").id == "b.md#1"
    assert index.find("learning rate controls").id == "a.md#1"
    assert index.find("absent") is None
    assert isinstance(Hit(chunk=chunks[0], score=1.0, rank=1, retriever="x"), Hit)
