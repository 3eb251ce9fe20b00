"""The one Q&A schema and quote matcher (rag.qa), shared by eval, finetune and ingest."""

from __future__ import annotations

import pytest

from rag.errors import InvalidInputError
from rag.qa import QAItem, contains_quote, normalize_for_match, parse_jsonl


def test_quotes_match_across_markup_case_and_whitespace() -> None:
    assert normalize_for_match("**Fraud**  detect →\n`PR-AUC`") == "fraud detect → pr-auc"
    assert contains_quote("| Fraud detect | → PR-AUC |", "fraud detect → pr-auc")
    assert not contains_quote("anything", "")  # an empty quote never matches
    assert not contains_quote("ROC-AUC", "PR-AUC")


def test_only_the_question_is_required_and_defaults_follow_the_item() -> None:
    plain = QAItem(id="a", question="what is dropout?")
    assert plain.answerable is None and not plain.labelled and plain.kind == "question"
    answered = QAItem(id="b", question="q?", answer="x", evidence=["x"])
    assert answered.answerable is True and answered.reference == "x"
    declined = QAItem.model_validate({"id": "c", "question": "q?", "answer": None})
    assert declined.answerable is False and declined.kind == "unanswerable"
    follow = QAItem.model_validate(
        {"id": "d", "question": "and there?", "history": [{"role": "user", "content": "hi"}]}
    )
    assert follow.kind == "followup" and follow.turns()[0].content == "hi"
    with pytest.raises(ValueError, match="blank"):
        QAItem(id="e", question="q?", evidence=["  "])


def test_jsonl_errors_name_the_file_and_line() -> None:
    lines = ['{"id": "a", "question": "q?"}', "", "{not json"]
    with pytest.raises(InvalidInputError, match=r"f.jsonl:3: not valid JSON"):
        list(parse_jsonl(lines, QAItem, "f.jsonl"))
    with pytest.raises(InvalidInputError, match=r"f.jsonl:1: question"):
        list(parse_jsonl(['{"id": "a"}'], QAItem, "f.jsonl"))
    parsed = list(parse_jsonl(lines[:2], QAItem, "f.jsonl"))
    assert [(n, item.id) for n, item in parsed] == [(1, "a")]
