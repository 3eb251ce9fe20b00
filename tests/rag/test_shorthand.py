"""Chat shorthand spelled out before a typed question is searched (rag.shorthand)."""

from __future__ import annotations

import pytest

from rag.shorthand import spell_out


@pytest.mark.parametrize(
    ("typed", "spelled"),
    [
        ("whats the diff between precision n recall", "what is the difference between precision and recall"),
        ("central limit thm y does it matter 4 ml", "central limit theorem why does it matter 4 machine learning"),
        ("np broadcasting rules plz", "NumPy (np) broadcasting rules"),
        ("dropout pls explain w example", "dropout explain with example"),
        ("train w/o dropout w/ batchnorm", "train without dropout with batchnorm"),
        ("gpt3 how many params", "gpt3 (gpt-3) how many parameters"),
        ("llama2 vs GPT4", "llama2 (llama-2) vs GPT4 (GPT-4)"),
        ("ML vs DL", "machine learning vs deep learning"),
        ("tl;dr kubeflow?", "kubeflow?"),
        ("kubeflow tl;dr?", "kubeflow?"),  # was searched as "kubeflow ;?"
        ("TL;DR: what is lora", "what is lora"),
        ("kubeflow tldr pls?", "kubeflow?"),
        ("onehot encoder unseen categories??", "onehot encoder unseen categories?"),
        # By hand: declined for the "rare term" btwn, which no page contains.
        ("diff btwn precision n recall?", "difference between precision and recall?"),
        ("best algo for imbalanced data thru sklearn", "best algorithm for imbalanced data through sklearn"),
    ],
)  # fmt: skip
def test_chat_shorthand_is_spelled_out(typed: str, spelled: str) -> None:
    assert spell_out(typed) == spelled


@pytest.mark.parametrize(
    "question",
    [
        "What does LoRA's r control?",
        "When should I use PR-AUC instead of ROC-AUC?",
        "np.where vs np.select",  # code: the alias is part of a name
        "how do i use n_estimators",
        "top n results",  # a variable, not "and"
        "choose n clusters how",
        "x and y split?",
        "y = f(x): what is y",
        "df.groupby then agg",
        "x[n] or x[w]",
        "float32 or int8 for resnet50?",  # dtypes and multi-digit names are not versions
        "python3 -m pip and model.gpt3()",
    ],
)
def test_questions_and_code_without_shorthand_are_left_alone(question: str) -> None:
    assert spell_out(question) == question


def test_a_question_of_filler_alone_is_kept_rather_than_emptied() -> None:
    assert spell_out("pls") == "pls"
