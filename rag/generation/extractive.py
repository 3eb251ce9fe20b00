"""The extractive generator: no LLM, the answer is the few context sentences that best match
the question, each followed by its ``[n]``. Always grounded (every sentence is verbatim from
the chunk it cites), fast, and available offline.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from rag.abstention import ABSTAIN_TEXT
from rag.sentences import (
    STOPWORDS,
    Sentence,
    SentenceEmbeddings,
    cached_sentences,
    content_words,
    split_sentences,
    word_count,
)
from rag.types import Answer, AnswerEvent, Hit, StreamEvent, TokenEvent, Turn

if TYPE_CHECKING:
    from rag.config import RetrievalSettings
    from rag.embeddings import Embedder

# Questions that name code let code lines compete without the code penalty.
_CODE_QUESTION = re.compile(
    r"`|\w\(\)|\b[a-z_]{2,}\.[a-z_]{2,}\b|\b(code|snippet|syntax|implement\w*|function|command|script|"
    r"import|api|signature|parameter|argument|how do i (write|call|run))\b",
    re.I,
)
# A "# comment" in a code line (after a prompt, at line start, or after code and a space).
_COMMENT = re.compile(r"(?:^(?:>>>\s*)?|\s)#+\s*(?P<comment>.*)$")
# Decoration around banner comments ("# ── Early stopping ─────"), not part of the quote.
_DECORATION = "─━═=-~*#_ \t"
_TRAILING_MARKER = re.compile(r"\s*\[\d+\]$")
# What rag.sentences needs to see to end a sentence before the next one.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")
_POSSESSIVE = re.compile(r"['’]s\b")
_LETTER_WORD = re.compile(r"[A-Za-z]{2,}")
MIN_WORDS = 4  # shorter sentences rarely answer anything ("See below.")
MAX_WORDS = 80  # longer "sentences" are usually unsplit lists or extraction debris
DUPLICATE_SIMILARITY = 0.92  # overlapping chunks repeat sentences; keep one copy
CODE_PENALTY = 0.25  # code/table lines compete only when clearly more relevant than prose
# Comments and worded table rows often state the answer in words ("r=16,  # rank — higher =
# more capacity"); they compete almost like prose. Dev split, against a full CODE_PENALTY:
# token F1 0.319 -> 0.324, embedding similarity 0.591 -> 0.599.
WORDED_LINE_PENALTY = 0.05
MIN_COMMENT_WORDS = 3  # "# 2" or "# type: int" say nothing; "# Freeze all layers" does
MIN_TABLE_WORDS = 4  # words of 3+ letters; "| --- | 0.5 |" rows say nothing
# Share of the question's content words a sentence repeats, added to its cosine: MiniLM alone
# often prefers a generic sentence on the same topic over the one that names the asked-about
# thing. Dev split: token F1 0.297 -> 0.324 at 0.3 (similar between 0.2 and 0.5).
LEXICAL_WEIGHT = 0.3
STEM_CHARS = 5  # prefix fold so "trained" matches "train", "normalizes" "normalization"
# Lexical pre-selection also prefers earlier (better-retrieved) blocks and prose.
RANK_PRIOR = 0.1
# Added to the score of a sentence that defines what a "what is X?" question asks about
# (rag.definitions): "whats lora" was answered with LoRA-FA's and rank_pattern's lines beside
# the guide's definition. Dev (runs/dev-qwen-32 -> runs/dev-ext-33): only typed-110 moved.
DEFINITION_BONUS = 0.3
# Candidates embedded per answer: a cold answer (chunks never seen) costs one batch of this
# many sentences. With the pre-selection above, dev-split scores were the same for 12, 16 and
# all sentences, lower for 8.
MAX_EMBEDDED = 12
# Sentences from the best sentence's block get this bonus: the text around an answer usually
# continues it, while a sentence from another document with the same score is often off-topic
# (dev split: token F1 0.319 -> 0.324, a small effect).
SAME_BLOCK_BONUS = 0.05
# Sentences from a boosted topic (settings.source_boost > 1: the user's own page) get this
# bonus, the sentence-level twin of that retrieval prior: when the page says it ("r=16,  #
# rank — higher = more capacity"), quote the page. Dev split: token F1 0.335 -> 0.340 and
# embedding similarity 0.592 -> 0.590 (0.05 and 0.15 alike): a wash on aggregate.
PREFERRED_SOURCE_BONUS = 0.1


@dataclass(frozen=True)
class Candidate:
    """A context sentence that may go into the answer."""

    n: int  # context block number (1-based)
    sentence: Sentence
    vector: np.ndarray
    # cosine similarity to the question + LEXICAL_WEIGHT * question-word share - line penalty
    # + PREFERRED_SOURCE_BONUS for the user's page
    relevance: float


def asks_for_code(question: str) -> bool:
    """Whether the question names code (then code lines compete without a penalty)."""
    return bool(_CODE_QUESTION.search(question))


@lru_cache(maxsize=65536)
def stems(text: str) -> frozenset[str]:
    """Content words of ``text`` folded to their first few letters, possessives dropped
    ("LoRA's" → "lora"), for matching question words against sentences."""
    return frozenset(w[:STEM_CHARS] for w in content_words(_POSSESSIVE.sub("", text)))


def question_overlap(question_stems: frozenset[str], sentence: str) -> float:
    """Share of the question's (stemmed) content words that ``sentence`` contains."""
    if not question_stems:
        return 0.0
    return len(question_stems & stems(sentence)) / len(question_stems)


def comment_quote(sentence: Sentence) -> Sentence | None:
    """For a code line carrying a worded comment: the comment alone when the line is only a
    comment (banner decoration trimmed), else the whole line (its code names what the comment
    explains: ``r=16,  # rank — higher = more capacity``); None without such a comment."""
    match = _COMMENT.search(sentence.text)
    if match is None or len(_LETTER_WORD.findall(match.group("comment"))) < MIN_COMMENT_WORDS:
        return None
    code = sentence.text[: match.start()].strip()
    if code and code != ">>>":
        return sentence
    comment = match.group("comment")
    trimmed = comment.strip(_DECORATION)
    if not trimmed:
        return None
    start = sentence.start + match.start("comment") + comment.index(trimmed)
    return Sentence(trimmed, start, start + len(trimmed), "code")


def last_argument_start(code: str) -> int | None:
    """Where the last keyword argument of ``code`` starts when the code ends inside a call
    (``LoraConfig( task_type=..., r=16,``), else None."""
    if not code.endswith(","):
        return None
    depth = 0
    for i in range(len(code) - 2, -1, -1):
        char = code[i]
        if char in ")]}":
            depth += 1
        elif char in "([{" and depth:
            depth -= 1
        elif depth == 0 and char in ",([{":
            start = i + 1 + len(code[i + 1 :]) - len(code[i + 1 :].lstrip())
            argument = code[start:]
            return start if re.match(r"\w+\s*=[^=]", argument) else None
    return None


def trim_to_commented_argument(sentence: Sentence) -> Sentence:
    """The part of a chosen code line to quote: from the last keyword argument on when its
    comment explains one argument of a call flattened onto one line (``lora_config =
    LoraConfig( task_type=..., r=16,  # rank — higher = more capacity`` quotes ``r=16,  #
    rank — ...``); otherwise the line. The whole line is what gets scored: the call names
    what the argument configures."""
    match = _COMMENT.search(sentence.text) if sentence.kind == "code" else None
    if match is None:
        return sentence
    code = sentence.text[: match.start()].rstrip()
    start = last_argument_start(code)
    if not start:
        return sentence
    return Sentence(sentence.text[start:], sentence.start + start, sentence.end, "code")


def worded_table_row(sentence: Sentence) -> bool:
    """Whether a table row says something in words (not just numbers and rules)."""
    return len(re.findall(r"[A-Za-z]{3,}", sentence.text)) >= MIN_TABLE_WORDS


def line_penalty(sentence: Sentence, allow_code: bool) -> tuple[Sentence, float]:
    """The piece of ``sentence`` to quote and how much its relevance is lowered: nothing for
    prose (or any line when the question asks for code), a little for worded comments and
    table rows, ``CODE_PENALTY`` for other code and table lines."""
    if sentence.is_prose or allow_code:
        return sentence, 0.0
    if sentence.kind == "code":
        quote = comment_quote(sentence)
        if quote is not None:
            return quote, WORDED_LINE_PENALTY
    if sentence.kind == "table" and worded_table_row(sentence):
        return sentence, WORDED_LINE_PENALTY
    return sentence, CODE_PENALTY


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
    same_block_bonus: float = 0.0,
) -> list[Candidate]:
    """Up to ``max_sentences`` candidates picked by MMR (relevance minus ``1 - diversity``
    times redundancy), none below ``min_relevance`` or more than ``drop`` below the best
    one; the best one's block mates get ``same_block_bonus``. Best first."""
    if not candidates:
        return []
    top = max(candidates, key=lambda c: c.relevance)
    scored = [
        c
        if c is top or c.n != top.n
        else dataclasses.replace(c, relevance=c.relevance + same_block_bonus)
        for c in candidates
    ]
    floor = max(min_relevance, top.relevance - drop)
    pool = [c for c in scored if c.relevance >= floor]
    chosen: list[Candidate] = []
    while pool and len(chosen) < max_sentences:

        def mmr(c: Candidate) -> float:
            redundancy = max((float(c.vector @ s.vector) for s in chosen), default=0.0)
            return diversity * c.relevance - (1 - diversity) * redundancy

        pick = max(pool, key=mmr)
        pool.remove(pick)
        if any(
            pick.sentence.text == s.sentence.text
            or float(pick.vector @ s.vector) >= DUPLICATE_SIMILARITY
            for s in chosen
        ):
            continue
        chosen.append(pick)
    return sorted(chosen, key=lambda c: -c.relevance)


def answer_tokens(pieces: list[str]) -> list[str]:
    """The pieces with their separators, as streamed: a space between sentences of prose, a
    line break around a piece that does not end a sentence or is a table/code line, so that
    the answer splits back into the same claims (``rag.citations.split_answer``)."""
    tokens: list[str] = []
    for i, piece in enumerate(pieces):
        if i == 0:
            tokens.append(piece)
            continue
        ends_sentence = _SENTENCE_END.search(_TRAILING_MARKER.sub("", pieces[i - 1]))
        first = split_sentences(piece)
        is_prose = bool(first) and first[0].kind == "prose"
        tokens.append((" " if ends_sentence and is_prose else "\n") + piece)
    return tokens


def _defining(query: str, hits: list[Hit]) -> frozenset[str]:
    """The sentences of ``hits`` that define what a "what is X?" ``query`` asks about
    (rag.definitions), as the sentence splitter cuts them."""
    from rag.definitions import definitions_in

    found = definitions_in(query, hits)
    if not found:
        return frozenset()
    return frozenset(
        sentence.text
        for hit in hits
        for sentence in cached_sentences(hit.chunk.text)
        if any(sentence.text in definition or definition in sentence.text for definition in found)
    )


class ExtractiveGenerator:
    """Answers with verbatim context sentences chosen by embedding similarity to the question
    plus the share of question words they repeat."""

    name = "extractive"

    def __init__(
        self,
        retrieval: RetrievalSettings,
        embedder: Embedder,
        sentences: SentenceEmbeddings | None = None,
        *,
        max_sentences: int = 2,
        diversity: float = 0.7,
        min_relevance: float = 0.25,
        drop: float = 0.15,
        max_embedded: int = MAX_EMBEDDED,
        lexical_weight: float = LEXICAL_WEIGHT,
        same_block_bonus: float = SAME_BLOCK_BONUS,
        preferred_source_bonus: float = PREFERRED_SOURCE_BONUS,
    ) -> None:
        self.embedder = embedder
        self.sentences = sentences or SentenceEmbeddings(embedder)
        # Dev split: three sentences carried the evidence for 0.46 of answerable items with 2.2
        # sentences an answer, often fragments from several places; two keep 0.45 with 1.7;
        # one drops to 0.30 (the value and the line that explains it are often two lines).
        self.max_sentences = max_sentences
        self.diversity = diversity
        self.min_relevance = min_relevance
        # Dev split: a 0.2 gap let weak sentences from other documents trail the answer (2.6
        # sentences per answer, token F1 0.30); 0.15 keeps 2.2 (F1 0.32, embedding similarity
        # unchanged); 0.1 cut sentences that answered half of "A or B?" questions.
        self.drop = drop
        self.max_embedded = max_embedded
        self.lexical_weight = lexical_weight
        self.same_block_bonus = same_block_bonus
        self.preferred_source_bonus = preferred_source_bonus
        self.preferred_topics = frozenset(
            topic for topic, boost in retrieval.source_boost.items() if boost > 1
        )

    def _pool(
        self, query_stems: frozenset[str], hits: list[Hit], allow_code: bool
    ) -> list[tuple[float, float, int, Sentence]]:
        """(question-word share, line penalty, block number, quote) of every quotable
        sentence; relaxed rules only when the strict ones leave nothing."""
        for relaxed in (False, True):
            pool = []
            for n, hit in enumerate(hits, 1):
                for sentence in cached_sentences(hit.chunk.text):
                    if sentence.kind == "heading":
                        continue
                    quote, penalty = line_penalty(sentence, allow_code)
                    if quotable(quote, hit.chunk.text, relaxed):
                        overlap = question_overlap(query_stems, quote.text)
                        pool.append((overlap, penalty, n, quote))
            if pool:
                return pool
        return []

    def _candidates(self, query: str, hits: list[Hit], limit: int | None = None) -> list[Candidate]:
        query_stems = stems(query)
        pool = self._pool(query_stems, hits, asks_for_code(query))
        if not pool:
            return []
        # Only the most promising sentences are embedded (cached per sentence), so an answer
        # costs one small batch even when its chunks were never seen before. Promise is cheap:
        # question words, then the block's rank and the line penalty.
        defines = _defining(query, hits)
        pool.sort(
            key=lambda p: (
                -(p[0] - RANK_PRIOR * (p[2] - 1) - p[1] + (p[3].text in defines)),
                p[2],
                p[3].start,
            )
        )
        pool = pool[: self.max_embedded]
        vectors = self.sentences.embed_texts([p[3].text for p in pool])
        query_vector = self.embedder.embed_query(query)
        return [
            Candidate(
                n,
                quote,
                vector,
                float(vector @ query_vector)
                + self.lexical_weight * overlap
                - penalty
                + self._source_bonus(hits[n - 1])
                + DEFINITION_BONUS * (quote.text in defines),
            )
            for (overlap, penalty, n, quote), vector in zip(pool, vectors, strict=True)
        ]

    def _source_bonus(self, hit: Hit) -> float:
        return self.preferred_source_bonus if hit.chunk.topic in self.preferred_topics else 0.0

    def compose(
        self, question: str, hits: list[Hit], history: list[Turn] | None = None
    ) -> list[str]:
        """The answer's pieces: each a verbatim context sentence followed by ``[n]``.
        ``question`` is the standalone (condensed) query; ``history`` is not needed."""
        chosen = select_sentences(
            self._candidates(question, hits),
            self.max_sentences,
            self.diversity,
            self.min_relevance,
            self.drop,
            self.same_block_bonus,
        )
        return [f"{trim_to_commented_argument(c.sentence).text} [{c.n}]" for c in chosen]

    def _answer(
        self, pieces: list[str], hits: list[Hit], started: float, adapter: str | None
    ) -> Answer:
        text = "".join(answer_tokens(pieces)) if pieces else ABSTAIN_TEXT
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
        for token in answer_tokens(pieces or [ABSTAIN_TEXT]):
            yield TokenEvent(token)
        yield AnswerEvent(self._answer(pieces, hits, started, adapter))
