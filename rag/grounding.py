"""Groundedness: how well each answer sentence is supported by the context it cites.

Support of a sentence ``s`` against evidence ``E`` (the text of its cited blocks, or all the
context when it cites nothing)::

    support(s, E) = 0.5 * max(0, max_{e in sentences(E)} cos(emb(s), emb(e)))
                  + 0.5 * |content_words(s) ∩ content_words(E)| / |content_words(s)|

i.e. meaning (best embedding cosine against any evidence sentence; 1 without embedding
anything when the sentence is copied verbatim from the evidence) and wording (recall of the
sentence's content words in the evidence), both in [0, 1]. A verbatim sentence scores 1.0;
a faithful paraphrase typically 0.6-0.8; an unrelated claim around 0.1-0.3. A sentence below
``settings.support_threshold`` is unsupported; ``strict`` answers drop such sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.citations import EMBEDDING_WEIGHT, AnswerSentence, lexical_recall, split_answer
from rag.sentences import SentenceEmbeddings

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.types import Hit


@dataclass(frozen=True)
class Grounding:
    """Support of every answer sentence, and the answer with unsupported sentences removed."""

    sentences: list[AnswerSentence]
    support: list[float]
    unsupported: list[str]  # plain text of sentences below the threshold
    strict_text: str  # the answer without unsupported sentences ("" when none is left)


MIN_VERBATIM_CHARS = 20  # shorter substrings match by accident ("It is.")


def is_verbatim(sentence: str, evidence: list[str]) -> bool:
    """Whether ``sentence`` is copied word for word from one of the evidence texts."""
    return len(sentence) >= MIN_VERBATIM_CHARS and any(sentence in text for text in evidence)


def evidence_support(
    sentences: list[str],
    evidence: list[list[str]],
    embedder: Embedder,
    cache: SentenceEmbeddings | None = None,
) -> list[float]:
    """Support of each sentence by its evidence texts (``evidence[i]``: the cited chunks'
    texts). A verbatim sentence has similarity 1 without being embedded; the rest are
    compared with the evidence sentences, cached per chunk."""
    if len(sentences) != len(evidence):
        raise ValueError("one evidence list per sentence is required")
    cache = cache or SentenceEmbeddings(embedder)
    to_embed = [
        s for s, texts in zip(sentences, evidence, strict=True) if not is_verbatim(s, texts)
    ]
    vectors = dict(zip(to_embed, cache.embed_texts(to_embed), strict=True))
    scores = []
    for sentence, texts in zip(sentences, evidence, strict=True):
        if sentence in vectors:
            blocks = cache.get_many(texts)
            similarity = max(
                (float(np.max(v @ vectors[sentence])) for _, v in blocks if len(v)), default=0.0
            )
        else:
            similarity = 1.0
        score = EMBEDDING_WEIGHT * max(0.0, similarity) + (1 - EMBEDDING_WEIGHT) * lexical_recall(
            sentence, "\n".join(texts)
        )
        scores.append(round(min(1.0, score), 4))
    return scores


def support_scores(
    sentences: list[str],
    cited_texts: list[str],
    embedder: Embedder,
    cache: SentenceEmbeddings | None = None,
) -> list[float]:
    """Support in [0, 1] of each sentence by its evidence text (``cited_texts[i]`` for
    ``sentences[i]``); see the module docstring for the formula."""
    if len(sentences) != len(cited_texts):
        raise ValueError("one evidence text per sentence is required")
    return evidence_support(sentences, [[t] for t in cited_texts], embedder, cache)


def _evidence_for(sentence: AnswerSentence, hits: list[Hit]) -> list[str]:
    cited = [hits[n - 1].chunk.text for n in sentence.numbers if 1 <= n <= len(hits)]
    return cited or [h.chunk.text for h in hits]


def _remove_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without the given spans, with the whitespace left behind tidied."""
    out, last = [], 0
    for start, end in sorted(spans):
        out.append(text[last:start])
        last = end
    out.append(text[last:])
    joined = "".join(out)
    joined = re.sub(r"[ \t]{2,}", " ", joined)
    joined = re.sub(r"[ \t]+\n", "\n", joined)
    joined = re.sub(r"\n{3,}", "\n\n", joined)
    return joined.strip()


def assess(
    text: str,
    hits: list[Hit],
    embedder: Embedder,
    threshold: float,
    cache: SentenceEmbeddings | None = None,
) -> Grounding:
    """Score every sentence of an answer (markers already cleaned) against its citations."""
    sentences = split_answer(text)
    claims = [s for s in sentences if s.plain]
    support = evidence_support(
        [s.plain for s in claims], [_evidence_for(s, hits) for s in claims], embedder, cache
    )
    weak = [s for s, score in zip(claims, support, strict=True) if score < threshold]
    strict_text = _remove_spans(text, [(s.start, s.end) for s in weak]) if weak else text.strip()
    # What is left must still say something (not just markers or punctuation).
    if not re.search(r"\w", re.sub(r"\[[\d,\s]+\]", "", strict_text)):
        strict_text = ""
    return Grounding(claims, support, [s.plain for s in weak], strict_text)
