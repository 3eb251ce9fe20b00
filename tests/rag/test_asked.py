"""rag.asked: a question asking for a default (or the version that added something) is answered
only from cited passages that state one."""

from __future__ import annotations

import pytest

from rag.asked import asked_kinds, asks_about_page, unbacked_claims, unstated_kinds

EXAMPLE = "batch_size = 64\ntrain_dataloader = DataLoader(training_data, batch_size=batch_size)"


@pytest.mark.parametrize(
    ("question", "kinds"),
    [
        ("what's the default batch size of a pytorch DataLoader if i don't pass one?", ["default"]),
        ("how many trees does a RandomForestClassifier build by default?", ["default"]),
        ("np.linspace defaults?", ["default"]),
        ("which seaborn version introduced the objects interface?", ["version added"]),
        ("since which version does pandas support pyarrow?", ["version added"]),
        ("when was solveset added to sympy?", ["version added"]),
        ("what batch size does the quickstart use?", []),
        ("which version of numpy do I have?", []),  # asks nothing about when
    ],
)
def test_what_a_question_asks_for(question: str, kinds: list[str]) -> None:
    assert [kind.name for kind in asked_kinds(question)] == kinds


def test_a_default_must_be_stated_by_a_cited_passage() -> None:
    question = "what's the default batch size of a DataLoader?"
    assert unstated_kinds(question, [EXAMPLE]) == ["default"]  # an example sets it: no default
    for stating in (
        "By default, PEFT initializes LoRA weights with Kaiming-uniform for weight A.",
        "batch_size (int, optional) – how many samples per batch to load (default: 1).",
        "Defaults to the task_compression setting.",
        "class EarlyStopping:\n    def __init__(self, patience=10):",
    ):
        assert unstated_kinds(question, [EXAMPLE, stating]) == [], stating


def test_the_version_that_added_something_must_be_stated() -> None:
    question = "which seaborn version introduced the objects interface?"
    mentions = "Note: As of current writing (v0.13.0), the full breadth of options is supported."
    assert unstated_kinds(question, [mentions]) == ["version added"]
    assert unstated_kinds(question, ["New in version 0.12: the objects interface."]) == []


def test_questions_asking_for_nothing_special_and_uncited_answers_pass() -> None:
    assert unstated_kinds("what batch size does the quickstart use?", [EXAMPLE]) == []
    assert unstated_kinds("what's the default batch size?", []) == []  # other checks decide


def test_an_answer_claiming_a_default_needs_a_cited_passage_stating_one() -> None:
    # By hand: "pytorch dataloader shuffle how" -> "The DataLoader shuffles the data by default
    # [1]", citing "Read more about loading data in PyTorch." (the default is not to shuffle).
    claim = "The DataLoader shuffles the data by default."
    assert unbacked_claims(claim, ["Read more about loading data in PyTorch."]) == ["default"]
    assert unbacked_claims(claim, ["shuffle (bool, optional) – … (default: False)."]) == []
    assert unbacked_claims("The DataLoader can shuffle the data.", ["Read more."]) == []
    assert unbacked_claims(claim, []) == ["default"]  # cited nothing: nothing backs it


def test_a_question_about_the_page_is_recognised() -> None:
    for question in (
        "what batch size does the page's CNN training loop use?",
        "lora alpha val in the page cfg?",
        "which activation does this page recommend?",
    ):
        assert asks_about_page(question), question
    for question in ("what does a page table do?", "how do I paginate pandas output?"):
        assert not asks_about_page(question), question
