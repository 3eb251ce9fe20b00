"""The extractive generator: no LLM, the answer is the few context sentences that best match
the question, each followed by its ``[n]``. Always grounded (every sentence is verbatim from
the chunk it cites), fast, and available offline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.prompt import ABSTAIN_TEXT
from rag.sentences import (
    STOPWORDS,
    Sentence,
    SentenceEmbeddings,
    cached_sentences,
    content_words,
    word_count,
)
from rag.types import Answer, AnswerEvent, Hit, StreamEvent, TokenEvent, Turn

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder

# Questions that name code let code lines compete without the code penalty.
_CODE_QUESTION = re.compile(
    r"`|\w\(\)|\b[a-z_]{2,}\.[a-z_]{2,}\b|\b(code|snippet|syntax|implement\w*|function|command|script|"
    r"import|api|signature|parameter|argument|how do i (write|call|run))\b",
    re.I,
)
MIN_WORDS = 4  # shorter sentences rarely answer anything ("See below.")
MAX_WORDS = 80  # longer "sentences" are usually unsplit lists or extraction debris
DUPLICATE_SIMILARITY = 0.92  # overlapping chunks repeat sentences; keep one copy
CODE_PENALTY = 0.25  # code/table lines compete only when clearly more relevant than prose
MAX_EMBEDDED = 16  # candidates embedded per answer (lexical pre-selection keeps it fast)


@dataclass(frozen=True)
class Candidate:
    """A context sentence that may go into the answer."""

    n: int  # context block number (1-based)
    sentence: Sentence
    vector: np.ndarray
    relevance: float  # cosine similarity to the question, minus the code penalty


def asks_for_code(question: str) -> bool:
    """Whether the question names code (then code lines compete without a penalty)."""
    return bool(_CODE_QUESTION.search(question))


def _ends_badly(sentence: str) -> bool:
    """Lead-ins ("as follows:") and lines cut off by extraction ("check out the")."""
    if sentence.endswith(":"):
        return True
    words = sentence.split()
    return sentence[-1] not in ".!?)\"'”" and bool(words) and words[-1].lower() in STOPWORDS


def quotable(sentence: Sentence, text: str, relaxed: bool = False) -> bool:
    """Whether a chunk sentence can stand alone as an answer sentence (``relaxed`` accepts
    anything but headings, for chunks that offer nothing better)."""
    if sentence.kind == "heading":
        return False
    if relaxed:
        return True
    if not MIN_WORDS <= word_count(sentence.text) <= MAX_WORDS or _ends_badly(sentence.text):
        return False
    if sentence.kind != "prose":
        return True
    # A chunk may start mid-sentence (overlap) or end mid-sentence (size limit): skip the
    # fragments, they read badly on their own.
    if sentence.text[0].islower():
        return False
    return not (sentence.end >= len(text.rstrip()) and sentence.text[-1] not in ".!?)\"'”")


def select_sentences(
    candidates: list[Candidate],
    max_sentences: int,
    diversity: float,
    min_relevance: float,
    drop: float,
) -> list[Candidate]:
    """Up to ``max_sentences`` candidates picked by MMR (relevance minus ``1 - diversity``
    times redundancy), none below ``min_relevance`` or far below the best one; best first."""
    if not candidates:
        return []
    best = max(c.relevance for c in candidates)
    pool = [c for c in candidates if c.relevance >= max(min_relevance, best - drop)]
    chosen: list[Candidate] = []
    while pool and len(chosen) < max_sentences:

        def mmr(c: Candidate) -> float:
            redundancy = max((float(c.vector @ s.vector) for s in chosen), default=0.0)
            return diversity * c.relevance - (1 - diversity) * redundancy

        pick = max(pool, key=mmr)
        pool.remove(pick)
        if any(float(pick.vector @ s.vector) >= DUPLICATE_SIMILARITY for s in chosen):
            continue
        chosen.append(pick)
    return sorted(chosen, key=lambda c: -c.relevance)


class ExtractiveGenerator:
    """Answers with verbatim context sentences chosen by embedding similarity."""

    name = "extractive"

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        sentences: SentenceEmbeddings | None = None,
        *,
        max_sentences: int = 3,
        diversity: float = 0.7,
        min_relevance: float = 0.25,
        drop: float = 0.2,
        max_embedded: int = MAX_EMBEDDED,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.sentences = sentences or SentenceEmbeddings(embedder)
        self.max_sentences = max_sentences
        self.diversity = diversity
        self.min_relevance = min_relevance
        self.drop = drop
        self.max_embedded = max_embedded

    def _query(self, question: str, history: list[Turn] | None) -> str:
        if not history:
            return question
        from rag.query_rewrite import condense_query

        return condense_query(question, history)

    def _candidates(self, query: str, hits: list[Hit]) -> list[Candidate]:
        allow_code = asks_for_code(query)
        query_words = content_words(query)
        for relaxed in (False, True):
            # (lexical overlap, penalty, block number, sentence): cheap to compute for all.
            pool = [
                (len(query_words & content_words(sentence.text)), penalty, n, sentence)
                for n, hit in enumerate(hits, 1)
                for sentence in cached_sentences(hit.chunk.text)
                if quotable(sentence, hit.chunk.text, relaxed)
                for penalty in [0.0 if sentence.is_prose or allow_code else CODE_PENALTY]
            ]
            if pool:
                break
        if not pool:
            return []
        # Only the lexically most promising sentences are embedded (cached per sentence), so
        # an answer costs one small batch even when its chunks were never seen before.
        pool.sort(key=lambda p: (-p[0], p[1], p[2], p[3].start))
        pool = pool[: self.max_embedded]
        vectors = self.sentences.embed_texts([p[3].text for p in pool])
        query_vector = self.embedder.embed_query(query)
        return [
            Candidate(n, sentence, vector, float(vector @ query_vector) - penalty)
            for (_, penalty, n, sentence), vector in zip(pool, vectors, strict=True)
        ]

    def compose(
        self, question: str, hits: list[Hit], history: list[Turn] | None = None
    ) -> list[str]:
        """The answer's pieces: each a verbatim context sentence followed by ``[n]``."""
        query = self._query(question, history)
        chosen = select_sentences(
            self._candidates(query, hits),
            self.max_sentences,
            self.diversity,
            self.min_relevance,
            self.drop,
        )
        return [f"{c.sentence.text} [{c.n}]" for c in chosen]

    def _answer(
        self, pieces: list[str], hits: list[Hit], started: float, adapter: str | None
    ) -> Answer:
        text = " ".join(pieces) if pieces else ABSTAIN_TEXT
        return Answer(
            text=text,
            citations=[],
            abstained=not pieces,
            generator=self.name,
            retriever=hits[0].retriever if hits else "",
            adapter=adapter,
            timings_ms={"generate": round((time.perf_counter() - started) * 1000, 2)},
            hits=list(hits),
        )

    def generate(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Answer:
        """An answer of up to three cited context sentences (citations are added by the
        pipeline's post-processing)."""
        started = time.perf_counter()
        return self._answer(self.compose(question, hits, history), hits, started, adapter)

    def stream(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Each answer sentence as a token event, then the answer event."""
        started = time.perf_counter()
        pieces = self.compose(question, hits, history)
        for i, piece in enumerate(pieces or [ABSTAIN_TEXT]):
            yield TokenEvent(piece if i == 0 else " " + piece)
        yield AnswerEvent(self._answer(pieces, hits, started, adapter))
