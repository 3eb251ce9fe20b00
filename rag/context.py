"""Context sized for a small model: each retrieved chunk cut to the sentences that matter.

On two CPU cores prefill is the cost of an LLM answer (a 600-token prompt takes 10-18 s with
the 1.5B model), and a small model reads a short context better. So before an LLM generator
sees the hits, every sentence of the hits is scored as the extractive answerer scores them
(embedding similarity plus the share of question words), and the best ones are kept, best
first, until the token budget is spent. Kept sentences stay in their block (its heading
and number), in their original order, so ``[n]`` still names a chunk and every quote is
verbatim. The budget was chosen on the dev split (bench/context_budget.py): the smallest one
that keeps the evidence in the context as often as the whole chunks do.

Tokens are estimated from characters (:data:`CHARS_PER_TOKEN`, measured for Qwen2.5's
tokenizer on this corpus with llama.cpp's prompt counts), since llama.cpp's Python binding
exposes no tokenizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.types import Hit

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.sentences import Sentence, SentenceEmbeddings

# Characters per model token on this corpus (measured 4.15 for Qwen2.5-Coder-1.5B on 20 chunks:
# their characters over llama.cpp's prompt token counts; rounded down to stay inside budgets).
CHARS_PER_TOKEN = 4.0
BLOCK_OVERHEAD_TOKENS = 6  # "[n] ", the heading's dash and the separators
# Scoring: cosine to the query plus this weight times the share of the query's content words
# the sentence repeats, minus a prior per retrieval rank. Chosen on the dev split (evidence
# kept in the 260-token context): 0.3 / 0.05 (the extractive answerer's): 0.64; 0.8 / 0.02:
# 0.67. Weighting the words by inverse document frequency did not help (0.66).
LEXICAL_WEIGHT = 0.8
RANK_PRIOR = 0.02


@dataclass(frozen=True)
class Scored:
    """A sentence of context block ``n`` (1-based) and its relevance to the query."""

    n: int
    sentence: Sentence
    relevance: float


def estimate_tokens(text: str) -> int:
    """Approximate model tokens of ``text``."""
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def block_overhead(hit: Hit) -> int:
    """Approximate tokens a block costs besides its sentences (its number and heading)."""
    chunk = hit.chunk
    return BLOCK_OVERHEAD_TOKENS + estimate_tokens(f"{chunk.title} {chunk.section}")


def rank_sentences(
    query: str, hits: Sequence[Hit], embedder: Embedder, cache: SentenceEmbeddings
) -> list[Scored]:
    """Every sentence of every hit (headings aside: the block heading shows them) scored
    against ``query``, best first. Embeddings come from the per-chunk cache, so a chunk is
    embedded once whatever question retrieves it."""
    from rag.generation.extractive import question_overlap, stems

    query_vector = embedder.embed_query(query)
    query_stems = stems(query)
    scored = []
    for n, (_hit, (sentences, vectors)) in enumerate(
        zip(hits, cache.get_many([h.chunk.text for h in hits]), strict=True), start=1
    ):
        similarities = vectors @ query_vector if len(sentences) else np.zeros(0)
        for sentence, similarity in zip(sentences, similarities, strict=True):
            if sentence.kind == "heading" or not sentence.text.strip():
                continue
            relevance = (
                float(similarity)
                + LEXICAL_WEIGHT * question_overlap(query_stems, sentence.text)
                - RANK_PRIOR * (n - 1)
            )
            scored.append(Scored(n, sentence, relevance))
    return sorted(scored, key=lambda s: -s.relevance)


def shown_text(source: str, sentence: Sentence) -> str:
    """``sentence`` as the cut context shows it: a code line keeps its indentation (the cut
    showed ``return x`` flush under ``def f():``, and the model copied invalid Python)."""
    if sentence.kind != "code":
        return sentence.text
    indent = source[source.rfind("\n", 0, sentence.start) + 1 : sentence.start]
    return indent + sentence.text if indent and not indent.strip() else sentence.text


def compress_hits(hits: Sequence[Hit], ranked: Sequence[Scored], budget_tokens: int) -> list[Hit]:
    """``hits`` cut to the best ``ranked`` sentences that fit ``budget_tokens`` (at least the
    best one), each followed by the sentence after it in its chunk when that fits too (a
    statement is often finished or explained by the next line: the comment after a code line,
    the answer after a question heading). Returned as new hits numbered 1.. in order of their
    best sentence; a hit none of whose sentences is kept is left out. Without ranked sentences
    the hits come back unchanged."""
    if not ranked:
        return list(hits)
    following: dict[tuple[int, int], Scored] = {}
    by_block: dict[int, list[Scored]] = {}
    for scored in ranked:
        by_block.setdefault(scored.n, []).append(scored)
    for n, block in by_block.items():
        block.sort(key=lambda s: s.sentence.start)
        for before, after in zip(block, block[1:], strict=False):
            following[(n, before.sentence.start)] = after
    kept: dict[int, dict[int, Scored]] = {}  # block -> sentence start -> sentence
    used = 0

    def take(candidate: Scored) -> bool:
        nonlocal used
        if candidate.sentence.start in kept.get(candidate.n, {}):
            return True
        cost = estimate_tokens(shown_text(hits[candidate.n - 1].chunk.text, candidate.sentence))
        if candidate.n not in kept:
            cost += block_overhead(hits[candidate.n - 1])
        if kept and used + cost > budget_tokens:
            return False
        kept.setdefault(candidate.n, {})[candidate.sentence.start] = candidate
        used += cost
        return True

    # The block of the best sentence first, whole if it fits: the answer is most often there,
    # and a model reads a passage better than scattered lines (dev split, budget 260:
    # evidence in context 0.61 -> 0.62; at 300: 0.60 -> 0.63).
    best = ranked[0].n
    order = [c for c in ranked if c.n == best] + [c for c in ranked if c.n != best]
    for candidate in order:
        if take(candidate):  # else a shorter, lower-ranked sentence may still fit
            next_one = following.get((candidate.n, candidate.sentence.start))
            if next_one is not None:
                take(next_one)
    compressed = []
    for rank, (n, chosen) in enumerate(kept.items(), start=1):  # dicts keep insertion order
        hit = hits[n - 1]
        text = "\n".join(
            shown_text(hit.chunk.text, chosen[start].sentence) for start in sorted(chosen)
        )
        chunk = dataclasses.replace(hit.chunk, text=text)
        compressed.append(Hit(chunk=chunk, score=hit.score, rank=rank, retriever=hit.retriever))
    return compressed


def _holds(text: str, quotes: Sequence[str]) -> bool:
    """Whether ``text`` holds one of ``quotes``, or is a worded piece of one (a quote may span
    two sentences)."""
    from rag.qa import contains_quote

    return any(
        contains_quote(text, quote) or (len(text.split()) >= 4 and contains_quote(quote, text))
        for quote in quotes
    )


def context_for(
    query: str,
    hits: Sequence[Hit],
    embedder: Embedder,
    cache: SentenceEmbeddings,
    budget_tokens: int,
    keep: Sequence[str] = (),
    first: Sequence[str] = (),
) -> list[Hit]:
    """The context an LLM reads for ``query``: ``hits`` cut to ``budget_tokens`` (whole when
    the budget is 0). One function for serving (rag.pipeline) and for fine-tuning examples
    (finetune.dataset), so a model is trained on the context it will be given. Sentences
    holding one of the ``keep`` quotes (a training example's evidence) are ranked first, so
    they are not cut; when they do not all fit, the hits come back whole. Sentences holding
    one of the ``first`` quotes (a definition the question asks for) are ranked first too,
    without that guarantee."""
    if budget_tokens <= 0 or not hits:
        return list(hits)
    ranked = rank_sentences(query, hits, embedder, cache)
    for quotes in (first, keep):  # keep's sentences end up before first's
        if quotes:
            held = [scored for scored in ranked if _holds(scored.sentence.text, quotes)]
            ranked = held + [scored for scored in ranked if scored not in held]
    context = compress_hits(hits, ranked, budget_tokens)
    if keep:
        from rag.qa import contains_quote

        kept = "\n".join(hit.chunk.text for hit in context)
        whole = "\n".join(hit.chunk.text for hit in hits)
        wanted = [quote for quote in keep if contains_quote(whole, quote)]
        if not all(contains_quote(kept, quote) for quote in wanted):
            return list(hits)
    return context
