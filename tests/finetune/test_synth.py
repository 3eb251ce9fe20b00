"""``mlrag finetune synth`` against the real anthropic SDK over a mocked transport: JSON drafts
are parsed and validated (verbatim evidence, no gold overlap, no duplicates); no key → a
clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.dataset import load_qa_items
from finetune.synth import parse_draft, synthesize_to_file
from rag.config import Settings
from rag.errors import InvalidInputError, ModelUnavailableError, UpstreamUnavailableError
from rag.types import Chunk
from tests.finetune.conftest import GOLD, write_jsonl
from tests.rag.anthropic_fakes import (
    RecordingTransport,
    error_response,
    json_response,
    make_client,
    message_body,
)

PASSAGES = [
    "Permutation importance measures how much a score drops when one feature's values are shuffled. "
    "The n_repeats parameter sets how many times each feature is permuted; more repeats give a more "
    "stable estimate at a higher cost.",
    "Early stopping ends training when the validation score has not improved for a number of rounds. "
    "It saves time and reduces overfitting because the model stops before it memorises the noise in the training data.",
    "A confusion matrix counts true positives, false positives, true negatives and false negatives. "
    "Precision and recall are both computed from these four counts for a chosen decision threshold on the predicted scores.",
]


def chunks() -> list[Chunk]:
    """The passages as chunks (each long enough to be sampled)."""
    return [
        Chunk(
            id=f"doc{i}#c",
            doc_id=f"doc{i}",
            text=t,
            section="S",
            metadata={"title": f"Doc {i}", "url": f"https://x.org/{i}", "topic": "ml"},
        )
        for i, t in enumerate(PASSAGES)
    ]


def reply(payload: object) -> object:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return json_response(message_body(text))


def good_draft(i: int) -> dict:
    quotes = {
        0: "The n_repeats parameter sets how many times each feature is permuted",
        1: "Early stopping ends training when the validation score has not improved for a number of rounds.",
        2: "Precision and recall are both computed from these four counts",
    }
    return {
        "question": f"question number {i} about {quotes[i].split()[1]}?",
        "answer": "A short answer.",
        "evidence": [quotes[i]],
        "kind": "keyword",
    }


def run(
    tmp_path: Path, replies: list, n: int = 3, gold_rows: list | None = None
) -> tuple[dict, RecordingTransport]:
    transport = RecordingTransport(replies)
    gold = write_jsonl(tmp_path / "gold.jsonl", gold_rows if gold_rows is not None else GOLD)
    report = synthesize_to_file(
        Settings(data_dir=tmp_path / "data"), tmp_path / "out.jsonl", n=n, seed=0, gold=gold,
        client=make_client(transport, max_retries=0), chunks=chunks(),
    )  # fmt: skip
    return report, transport


def test_valid_drafts_are_written_in_the_gold_format(tmp_path: Path) -> None:
    # The chunk order is seeded; answer each request from the passage it carries.
    def answer(request):
        body = json.loads(request.content)
        passage = body["messages"][0]["content"]
        i = next(i for i, p in enumerate(PASSAGES) if p in passage)
        return reply(good_draft(i))

    report, transport = run(tmp_path, [answer])
    assert report == {"written": 3, "rejected": 0, "reasons": {}}
    items = load_qa_items(tmp_path / "out.jsonl")
    assert len(items) == 3 and all(
        i.answerable and i.split == "train" and i.kind == "keyword" for i in items
    )
    assert {i.source for i in items} == {"https://x.org/0", "https://x.org/1", "https://x.org/2"}
    request = transport.requests[0].body
    assert request["model"] == Settings().claude_model and "JSON" in request["system"]
    assert "<passage>" in request["messages"][0]["content"]


def test_invalid_drafts_are_rejected_with_reasons(tmp_path: Path) -> None:
    not_verbatim = {**good_draft(0), "evidence": ["n_repeats sets the number of permutations"]}
    overlapping = {**good_draft(1), "question": GOLD[0]["question"]}
    replies = [reply("Sure! Here is no json at all."), reply(not_verbatim), reply(overlapping)]
    report, _ = run(tmp_path, replies, n=3)
    assert report["written"] == 0 and report["rejected"] == 3
    assert report["reasons"] == {
        "no JSON": 1,
        "evidence not verbatim": 1,
        "overlaps the gold set": 1,
    }


def test_parse_draft_accepts_fenced_json_and_skip() -> None:
    chunk = chunks()[0]
    fenced = "```json\n" + json.dumps(good_draft(0)) + "\n```"
    item = parse_draft(fenced, chunk)
    assert not isinstance(item, str) and item.evidence == [good_draft(0)["evidence"][0]]
    assert parse_draft('{"skip": true}', chunk) == "skipped by Claude"
    assert (
        parse_draft(json.dumps({**good_draft(0), "answer": "x" * 500}), chunk)
        == "no or long answer"
    )


def test_no_api_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="ANTHROPIC_API_KEY"):
        synthesize_to_file(Settings(data_dir=tmp_path), tmp_path / "out.jsonl", chunks=chunks())


def test_upstream_errors_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(UpstreamUnavailableError):
        run(tmp_path, [error_response(529, "overloaded_error", "Overloaded")])
    (tmp_path / "out.jsonl").write_text("keep\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="--force"):
        run(tmp_path, [reply(good_draft(0))])
