"""Context sized for a small model (rag.context): each chunk cut to its relevant sentences."""

from __future__ import annotations

from rag.context import compress_hits, estimate_tokens, rank_sentences
from rag.qa import contains_quote
from rag.sentences import SentenceEmbeddings
from tests.rag.answering_corpus import hits_for

TITLES = ("Regularization", "Evaluation Metrics", "Parameter-Efficient Fine-Tuning", "Optimization")


def test_budget_is_kept_and_the_best_block_comes_first(embedder) -> None:
    hits = hits_for(*TITLES)
    query = "Which metric should I use for imbalanced fraud detection?"
    ranked = rank_sentences(query, hits, embedder, SentenceEmbeddings(embedder))
    assert ranked[0].n == 2  # the metrics block holds the best sentence
    small = compress_hits(hits, ranked, 60)
    assert small[0].chunk.title == "Evaluation Metrics" and small[0].rank == 1
    assert sum(estimate_tokens(h.chunk.text) for h in small) <= 60
    assert len(small) < len(hits)  # blocks with nothing kept are left out
    # Kept sentences are verbatim and in their original order; ids still name the chunk.
    original = hits[1].chunk.text
    assert all(line in original for line in small[0].chunk.text.split("\n"))
    assert small[0].chunk.id == hits[1].chunk.id
    # A generous budget keeps everything relevant, including the PR-AUC line.
    large = compress_hits(hits, ranked, 2000)
    assert any(contains_quote(h.chunk.text, "PR-AUC") for h in large)


def test_the_sentence_after_a_kept_one_comes_along(embedder) -> None:
    hits = hits_for("Regularization")
    query = "What does dropout do during training?"
    ranked = rank_sentences(query, hits, embedder, SentenceEmbeddings(embedder))
    best = ranked[0]
    later = sorted(
        (s for s in ranked if s.sentence.start > best.sentence.start),
        key=lambda s: s.sentence.start,
    )
    kept = compress_hits(hits, [best], 1000)[0].chunk.text
    assert best.sentence.text in kept
    if later:  # with a budget, the next sentence of the chunk follows the best one
        assert compress_hits(hits, ranked, 1000)[0].chunk.text.count("\n") >= 1


def test_nothing_ranked_leaves_the_hits_unchanged() -> None:
    hits = hits_for(*TITLES)
    assert compress_hits(hits, [], 10) == hits


def test_context_for_keeps_the_quotes_a_training_example_needs(embedder) -> None:
    """Serving and fine-tuning cut the context with one function; a training example's
    evidence sentence is never cut, even when the query ranks it low."""
    from rag.context import context_for

    hits = hits_for(*TITLES)
    cache = SentenceEmbeddings(embedder)
    query = "Which metric should I use for imbalanced fraud detection?"
    quote = "The learning rate sets the step size."
    served = context_for(query, hits, embedder, cache, 60)
    assert served == compress_hits(hits, rank_sentences(query, hits, embedder, cache), 60)
    assert not any(contains_quote(h.chunk.text, quote) for h in served)
    trained = context_for(query, hits, embedder, cache, 60, keep=[quote])
    assert any(contains_quote(h.chunk.text, quote) for h in trained)
    assert sum(len(h.chunk.text) for h in trained) < sum(len(h.chunk.text) for h in hits)
    # A budget of 0 means whole chunks; quotes that cannot all fit give the whole hits back.
    assert context_for(query, hits, embedder, cache, 0) == hits
    two = [quote, "Dropout randomly sets a fraction of activations to zero during training."]
    assert context_for(query, hits, embedder, cache, 5, keep=two) == hits


def test_context_for_ranks_the_first_sentences_first_within_the_budget(embedder) -> None:
    """A definition the question asks for is kept first; unlike ``keep`` it never gives the
    whole hits back (serving stays within the budget)."""
    from rag.context import context_for

    hits = hits_for(*TITLES)
    cache = SentenceEmbeddings(embedder)
    query = "Which metric should I use for imbalanced fraud detection?"
    quote = "The learning rate sets the step size."
    cut = context_for(query, hits, embedder, cache, 30, first=[quote])
    assert contains_quote(cut[0].chunk.text, quote)  # its block comes first
    assert sum(estimate_tokens(h.chunk.text) for h in cut) <= 30
    two = [quote, "Dropout randomly sets a fraction of activations to zero during training."]
    assert context_for(query, hits, embedder, cache, 5, first=two) != hits


def test_code_lines_keep_their_indentation_in_the_cut() -> None:
    # The cut showed "return ..." flush under "def ...():" and the 1.5B model copied invalid
    # Python ("how do i retry a failed celery task").
    from rag.context import Scored
    from rag.sentences import split_sentences
    from rag.types import Chunk, Hit

    text = (
        "Retry on an exception with autoretry_for.\n```python\n"
        "@app.task(autoretry_for=(FailWhaleError,))\ndef refresh_timeline(user):\n"
        "    return twitter.refresh_timeline(user)\n```"
    )
    hits = [Hit(Chunk(id="c", doc_id="d", text=text), 1.0, 1, "dense")]
    ranked = [Scored(1, s, 1.0) for s in split_sentences(text) if s.text.strip()]
    cut = compress_hits(hits, ranked, 1000)[0].chunk.text
    assert "def refresh_timeline(user):\n    return twitter.refresh_timeline(user)" in cut
