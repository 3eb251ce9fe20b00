"""The exact check of an answer's specifics (rag.specifics) and the verify stage (rag.verify)."""

from __future__ import annotations

from rag.specifics import missing_specifics, specifics
from rag.verify import drop_invented, recite
from tests.rag.answering_corpus import hits_for

CONTEXT = [
    "r=16,  # rank — higher = more capacity, more params",
    "Use PR-AUC for fraud detection. torch.optim.Adam(lr=1e-3) is the default optimizer here.",
]


def test_numbers_identifiers_and_names_are_the_specifics() -> None:
    found = specifics(
        "Call torch.optim.Adam with lr=1e-3 and set lora_dropout like DeepSpeed does."
    )
    assert {"torch.optim.Adam", "1e-3", "lora_dropout", "DeepSpeed"} <= found
    assert "Call" not in found  # a sentence opener is not a name


def test_specifics_must_occur_in_the_context_or_the_question() -> None:
    assert missing_specifics("The example uses r=16.", CONTEXT) == []
    assert missing_specifics("The default momentum is 0.1.", CONTEXT) == ["0.1"]
    assert missing_specifics("It is 6.", CONTEXT) == ["6"]  # "6" inside "16" does not count
    assert missing_specifics("DeepSpeed ZeRO shards it.", CONTEXT) == ["DeepSpeed", "ZeRO"]
    assert missing_specifics("DeepSpeed shards it.", [*CONTEXT, "what about DeepSpeed?"]) == []


def test_invented_sentences_are_dropped_and_the_rest_kept() -> None:
    text = "Use PR-AUC for fraud [1]. Its default threshold is 0.37 [1]."
    kept, invented = drop_invented(text, CONTEXT)
    assert kept == "Use PR-AUC for fraud [1]." and invented == ["Its default threshold is 0.37."]


def test_a_wrong_or_missing_citation_moves_to_the_supporting_block(embedder) -> None:
    hits = hits_for("Regularization", "Evaluation Metrics")
    wrong = "PR-AUC is the better metric for imbalanced fraud detection [1]."
    fixed, changed = recite(wrong, hits, embedder, None, 0.5)
    assert (
        fixed == "PR-AUC is the better metric for imbalanced fraud detection [2]." and changed == 1
    )
    uncited, changed = recite(
        "PR-AUC is the better metric for fraud detection.", hits, embedder, None, 0.5
    )
    assert uncited == "PR-AUC is the better metric for fraud detection [2]." and changed == 1
    right, changed = recite(wrong.replace("[1]", "[2]"), hits, embedder, None, 0.5)
    assert right == wrong.replace("[1]", "[2]") and changed == 0
