"""Follow-up questions become standalone queries; standalone questions stay unchanged."""

from __future__ import annotations

import pytest

from rag.query_rewrite import condense_query, needs_context, salient_terms
from rag.types import Turn

LORA = [
    Turn("user", "How does LoRA work in peft?"),
    Turn("assistant", "LoRA adds trainable low-rank matrices to frozen weights [1]. It is cheap."),
]
INSTALL = [
    Turn("user", "How do I install scikit-learn with pip?"),
    Turn("assistant", "Run pip install scikit-learn in your environment."),
]


@pytest.mark.parametrize(
    ("history", "question", "must_contain", "must_not_contain"),
    [
        (LORA, "and what about its rank?", ["LoRA", "peft", "low-rank"], ["trainable", "frozen"]),
        (LORA, "Is it better than full fine-tuning?", ["LoRA", "peft"], []),
        (
            [
                Turn("user", "What is bm25s?"),
                Turn("assistant", "The bm25s package is a fast BM25 library for Python."),
            ],
            "how do I install it?",
            ["bm25s", "BM25", "Python"],
            ["package", "fast"],
        ),
        (INSTALL, "and numpy?", ["install", "scikit-learn", "pip"], ["Run", "environment"]),
        (
            [Turn("user", "Should I use PR-AUC or ROC-AUC for fraud detection?")],
            "why?",
            ["PR-AUC", "ROC-AUC", "fraud", "detection"],
            ["Should"],
        ),
        (
            [Turn("user", "Explain np.linalg.eig please")],
            "what about those for symmetric matrices?",
            ["np.linalg.eig"],
            ["Explain", "please"],
        ),
    ],
)
def test_follow_ups_get_the_conversation_terms(
    history, question, must_contain, must_not_contain
) -> None:
    query = condense_query(question, history)
    assert query.startswith(question)
    added = query[len(question) :].split()
    for term in must_contain:
        assert term in added
    for term in must_not_contain:
        assert term not in added


def test_chained_follow_ups_reach_back_to_the_topic() -> None:
    history = [*INSTALL, Turn("user", "and numpy?"), Turn("assistant", "Run pip install numpy.")]
    added = condense_query("and with conda?", history).split()
    assert "numpy" in added and "scikit-learn" in added


@pytest.mark.parametrize(
    "question",
    [
        "What is gradient boosting in scikit-learn?",
        "How do I compute eigenvalues of a symmetric matrix with numpy?",
        "Which optimizer should I use for fine-tuning a transformer model?",
    ],
)
def test_standalone_questions_are_unchanged(question: str) -> None:
    assert not needs_context(question)
    assert condense_query(question, LORA) == question


def test_no_history_no_change() -> None:
    assert condense_query("and what about its rank?", []) == "and what about its rank?"


def test_terms_already_in_the_question_are_not_repeated() -> None:
    query = condense_query("what about its rank in LoRA?", LORA)
    assert query.lower().count("lora") == 1


def test_deterministic() -> None:
    assert len({condense_query("and what about its rank?", LORA) for _ in range(5)}) == 1


def test_salient_terms_drop_function_words_and_markers() -> None:
    assert salient_terms("What is the difference between PR-AUC and ROC-AUC [2]?") == [
        "PR-AUC",
        "ROC-AUC",
    ]


# --- condensing with a model ----------------------------------------------------------------------
def test_the_model_rewrite_is_used_and_bad_output_falls_back() -> None:
    from rag.errors import GenerationError
    from rag.query_rewrite import condense_messages, condense_with

    history = [Turn("user", "How do I fine-tune with LoRA?"), Turn("assistant", "Use peft [1].")]
    seen: list[list[dict[str, str]]] = []

    def good(messages: list[dict[str, str]], max_tokens: int) -> str:
        seen.append(messages)
        return "Standalone question: What learning rate should I use for LoRA fine-tuning?\n"

    assert condense_with(good, "what about the learning rate there?", history) == (
        "What learning rate should I use for LoRA fine-tuning?"
    )
    assert "How do I fine-tune with LoRA?" in seen[0][-1]["content"]
    assert condense_messages("q?", history)[0]["role"] == "system"

    def broken(messages: list[dict[str, str]], max_tokens: int) -> str:
        raise GenerationError("model down")

    assert condense_with(broken, "and there?", history) is None
    assert condense_with(lambda m, n: "   ", "and there?", history) is None
    assert condense_with(lambda m, n: "x" * 400, "and there?", history) is None


def test_a_rewrite_that_loses_a_term_of_the_question_falls_back() -> None:
    from rag.query_rewrite import condense_with, lost_terms

    # By hand with the 1.5B model: "what r should i use" after a LoRA question came back as
    # "What should I use for fine-tuning a model with LoRA?", a question about something else.
    history = [Turn("user", "how do i fine tune a model with lora"), Turn("assistant", "x [1].")]
    bad = "What should I use for fine-tuning a model with LoRA?"
    assert lost_terms("what r should i use", bad) == ["r"]
    # The heuristic's query instead: the question whole, with the conversation's terms (the
    # heuristic alone takes "what r should i use" for a standalone question; the model did not).
    assert condense_query("what r should i use", history) == "what r should i use"
    assert condense_with(lambda m, n: bad, "what r should i use", history) == (
        "what r should i use fine tune model lora"
    )
    # Pointers back, chat shorthand, spelled-out aliases, inflections and fixed typos are
    # what a rewrite is for: nothing is lost.
    kept = {
        "and whats lora_alpha for": "What is lora_alpha for in LoRA?",
        "what about that one?": "What about the LoRA adapter?",
        "how do i save it w np": "How do I save the array with NumPy?",
        "which params does it freeze": "Which parameters does LoRA freeze?",
        "is pytroch faster there": "Is PyTorch faster for LoRA fine-tuning?",
        "what r they for": "What are LoRA adapters for?",
        "and the configs?": "And the LoRA configurations?",
        "is there another way, just for one tensor?": "How do I detach a single tensor?",
        "and back to numpy?": "How can I convert a tensor to a NumPy array?",
    }
    for question, rewrite in kept.items():
        assert lost_terms(question, rewrite) == [], question
        assert condense_with(lambda m, n, r=rewrite: r, question, history) == rewrite
