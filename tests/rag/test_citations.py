"""Citation markers: parsing, invalid-marker removal, one citation per block, verbatim quotes."""

from __future__ import annotations

from rag.citations import (
    clean_markers,
    drop_repeated_marker_lines,
    parse_numbers,
    postprocess,
    quoted_parts,
    split_answer,
)
from tests.rag.answering_corpus import hits_for


def test_parse_numbers_of_a_marker() -> None:
    assert parse_numbers("1, 3") == [1, 3]
    assert parse_numbers("12") == [12]


def test_markers_pointing_at_no_block_are_removed_and_counted() -> None:
    text, removed = clean_markers(
        "PR-AUC suits fraud [1][4]. LoRA adds adapters [0]. Rank matters [2, 9].", 2
    )
    assert text == "PR-AUC suits fraud [1]. LoRA adds adapters. Rank matters [2]."
    assert removed == 3


def test_valid_markers_are_left_untouched() -> None:
    original = "A [1][2]. B [1, 2]. C [2]."
    assert clean_markers(original, 2) == (original, 0)


def test_brackets_inside_code_are_not_markers() -> None:
    text, removed = clean_markers("Index with `x[7]` first [1].\n```\ny = x[9]\n```", 1)
    assert removed == 0
    assert "`x[7]`" in text and "y = x[9]" in text


def test_markers_after_the_full_stop_belong_to_the_previous_sentence() -> None:
    sentences = split_answer(
        "PR-AUC focuses on positives. [1] LoRA learns a low-rank update [2]. Done."
    )
    assert [s.numbers for s in sentences] == [[1], [2], []]
    assert sentences[0].plain == "PR-AUC focuses on positives."
    assert sentences[1].text == "LoRA learns a low-rank update [2]."


def test_postprocess_builds_one_citation_per_block_with_verbatim_quotes(embedder) -> None:
    hits = hits_for("Evaluation Metrics", "Regularization", "Optimization")
    answer = (
        "For rare fraud cases PR-AUC is the better metric [1]. "
        "Dropout zeroes some activations while training to limit overfitting [2][7]. "
        "PR-AUC concentrates on the positive class [1, 2]."
    )
    text, citations, removed = postprocess(answer, hits, embedder)
    assert removed == 1
    assert "[7]" not in text
    assert [c.n for c in citations] == [1, 2]
    for citation in citations:
        hit = hits[citation.n - 1]
        assert citation.quote and citation.quote in hit.chunk.text
        assert citation.chunk_id == hit.chunk.id and citation.url == hit.chunk.url
        assert citation.title == hit.chunk.title and citation.section == hit.chunk.section
    # The quote is the chunk sentence that supports the claim, not just the first sentence.
    assert citations[0].quote.startswith("PR-AUC, the area under the precision-recall curve")
    assert citations[1].quote.startswith("Dropout randomly sets a fraction of activations")


def test_a_block_cited_by_two_sentences_quotes_the_support_of_each(embedder) -> None:
    hits = hits_for("Evaluation Metrics", "Regularization")
    answer = (
        "PR-AUC is the better metric for fraud [1]. "
        "A random classifier scores the positive rate, 0.001 for fraud [1]. "
        "Dropout is disabled at inference time [2]. Dropout zeroes activations in training [2]."
    )
    _, citations, _ = postprocess(answer, hits, embedder)
    metrics, dropout = (c.quote for c in citations)
    pr_auc = "PR-AUC, the area under the precision-recall curve, focuses on the rare positive"
    assert metrics.startswith(pr_auc) and metrics.endswith("e.g. 0.001 for fraud.")
    assert metrics in hits[0].chunk.text  # adjacent sentences: one verbatim span
    # Each claim's sentence, in the chunk's order, verbatim (here adjacent or not, both shown).
    assert "Dropout randomly sets a fraction" in dropout and "At inference time" in dropout
    assert all(part in hits[1].chunk.text for part in quoted_parts(dropout))


def test_answer_without_markers_has_no_citations(embedder) -> None:
    text, citations, removed = postprocess(
        "Gradient descent follows the gradient.", hits_for("Optimization"), embedder
    )
    assert (text, citations, removed) == ("Gradient descent follows the gradient.", [], 0)


def test_all_markers_invalid_when_there_is_no_context(embedder) -> None:
    text, citations, removed = postprocess("Something [1].", [], embedder)
    assert text == "Something." and citations == [] and removed == 1


def test_a_lone_marker_line_repeating_a_citation_is_dropped() -> None:
    # By hand: the 1.5B model's Celery retry answer cited [1] in its sentences, then wrote its
    # code block and a lone "[1]" line under it.
    code = "```python\n@app.task(autoretry_for=(E,))\ndef f(x):\n    return x[1]\n```"
    answer = f"Use `autoretry_for` [1]. For example: [1]\n{code}\n\n[1]"
    assert (
        drop_repeated_marker_lines(answer) == f"Use `autoretry_for` [1]. For example: [1]\n{code}"
    )
    # The only citation of its block stays (it cites the code), as do brackets inside code.
    alone = f"Like this:\n{code}\n[2]"
    assert drop_repeated_marker_lines(alone) == alone
    assert drop_repeated_marker_lines("A [1].\n[1][2]") == "A [1].\n[1][2]"
    assert drop_repeated_marker_lines("A [1][2].\n[2]\n") == "A [1][2]."


def test_a_bare_value_is_quoted_from_the_line_the_question_asks_about(embedder) -> None:
    # By hand: "16 [2]" to "what is the value of lora_alpha?" quoted "r=16," from a config
    # that sets both r=16 and lora_alpha=16: the value alone matched either line.
    from rag.citations import build_citations
    from rag.types import Chunk, Hit

    config = "config = LoraConfig(\nr=16,\nlora_alpha=16,\nlora_dropout=0.1,\n)"
    hits = [Hit(Chunk(id="d#1", doc_id="d", text=config), 1.0, 1, "bm25")]
    asked = build_citations("16 [1]", hits, embedder, query="what is the value of lora_alpha?")
    assert asked[0].quote == "lora_alpha=16,"
    # A sentence that says what it is about is quoted for itself, whatever the question.
    said = build_citations("The rank r is 16 [1].", hits, embedder, query="what is lora_alpha?")
    assert said[0].quote == "r=16,"
