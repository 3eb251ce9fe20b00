"""Support scores of answer sentences and strict-mode removal of unsupported ones."""

from __future__ import annotations

import pytest

from rag.grounding import assess, support_scores
from tests.rag.answering_corpus import hits_for

THRESHOLD = 0.5
LORA = hits_for("Parameter-Efficient Fine-Tuning")[0].chunk.text


def test_verbatim_sentence_is_fully_supported(embedder) -> None:
    sentence = "The learning rate sets the step size."
    [score] = support_scores([sentence], [hits_for("Optimization")[0].chunk.text], embedder)
    assert score == pytest.approx(1.0, abs=1e-3)


def test_paraphrase_is_supported_and_unrelated_claim_is_not(embedder) -> None:
    scores = support_scores(
        [
            "A bigger LoRA rank r gives the adapter more capacity and more trainable parameters.",
            "Paris is the capital of France and hosts the Louvre museum.",
        ],
        [LORA, LORA],
        embedder,
    )
    assert scores[0] >= THRESHOLD > scores[1]
    assert scores[1] < 0.3


def test_support_needs_one_evidence_text_per_sentence(embedder) -> None:
    with pytest.raises(ValueError):
        support_scores(["a", "b"], ["only one"], embedder)
    assert support_scores([], [], embedder) == []


def test_uncited_sentence_is_checked_against_all_context(embedder) -> None:
    hits = hits_for("Optimization", "Regularization")
    grounding = assess("Dropout reduces overfitting.", hits, embedder, THRESHOLD)
    assert grounding.support[0] >= THRESHOLD and grounding.unsupported == []


def test_citing_the_wrong_block_makes_a_sentence_unsupported(embedder) -> None:
    hits = hits_for("Optimization", "Regularization")
    grounding = assess(
        "Dropout randomly sets a fraction of activations to zero during training [1].",
        hits,
        embedder,
        THRESHOLD,
    )
    right = assess(
        "Dropout randomly sets a fraction of activations to zero during training [2].",
        hits,
        embedder,
        THRESHOLD,
    )
    assert grounding.support[0] < THRESHOLD <= right.support[0]


def test_strict_text_drops_only_unsupported_sentences(embedder) -> None:
    hits = hits_for("Parameter-Efficient Fine-Tuning")
    answer = (
        "The rank r controls the size of the update [1]. "
        "LoRA was invented by the Roman emperor Augustus in 12 BC [1]. "
        "Only the adapter weights are saved [1]."
    )
    grounding = assess(answer, hits, embedder, THRESHOLD)
    assert grounding.unsupported == ["LoRA was invented by the Roman emperor Augustus in 12 BC."]
    assert grounding.strict_text == (
        "The rank r controls the size of the update [1]. Only the adapter weights are saved [1]."
    )
    assert len(grounding.support) == 3


def test_strict_text_is_empty_when_nothing_is_supported(embedder) -> None:
    grounding = assess("Bananas are yellow [1].", hits_for("Optimization"), embedder, THRESHOLD)
    assert grounding.unsupported and grounding.strict_text == ""
