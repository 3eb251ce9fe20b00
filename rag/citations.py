"""``[n]`` citation markers: parsing, removing markers that point at nothing, and turning the
kept ones into :class:`~rag.types.Citation` objects that quote the exact supporting sentence
of the cited chunk for each answer sentence that cites it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rag.sentences import (
    Sentence,
    SentenceEmbeddings,
    cached_sentences,
    content_words,
    split_sentences,
)
from rag.types import Citation, Hit

if TYPE_CHECKING:
    from rag.embeddings import Embedder

# "[1]", "[1, 3]", "[2,4]"; "[1][2]" is two consecutive markers.
MARKER = re.compile(r"\[\s*(\d{1,4}(?:\s*,\s*\d{1,4})*)\s*\]")
MARKER_WITH_SPACE = re.compile(r"\s*" + MARKER.pattern)
_LEADING_MARKERS = re.compile(r"(?:\s*\[\s*\d{1,4}(?:\s*,\s*\d{1,4})*\s*\])+[.,;:]?")
_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.S)  # fenced, fences included
_CODE_SPAN = re.compile(_CODE_BLOCK.pattern + r"|`[^`\n]*`", re.S)  # fenced or inline

# How a quote is chosen and how support is scored: equal weight to meaning (embedding cosine)
# and wording (share of the answer sentence's content words found in the cited text).
EMBEDDING_WEIGHT = 0.5
# A block cited by several answer sentences quotes the support of each of the first two: the
# reader of "NumPy makes linear algebra fast [1]. PyTorch, scikit-learn and pandas build on
# it [1]." should find both lines behind [1], not the first alone.
MAX_QUOTED_CLAIMS = 2
MAX_SPAN_CHARS = 400  # sentences this close are quoted as one verbatim span
QUOTE_SEPARATOR = " … "


@dataclass(frozen=True)
class AnswerSentence:
    """One sentence of an answer: ``text`` (with markers) is ``answer[start:end]``."""

    text: str
    start: int
    end: int
    numbers: list[int] = field(default_factory=list)  # cited context blocks, in order
    is_code: bool = False  # a line of a fenced code block (or its fence): not a sentence to cite

    @property
    def plain(self) -> str:
        """The sentence without its citation markers."""
        return " ".join(MARKER_WITH_SPACE.sub("", self.text).split())


def _code_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _CODE_SPAN.finditer(text)]


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def parse_numbers(marker: str) -> list[int]:
    """The block numbers of one marker's inner text (``"1, 3"`` → ``[1, 3]``)."""
    return [int(x) for x in re.findall(r"\d+", marker)]


def clean_markers(text: str, n_blocks: int) -> tuple[str, int]:
    """Drop marker numbers outside ``1..n_blocks`` (a marker left empty disappears with the
    space before it); returns the text and how many numbers were removed. Brackets inside
    code (``x[0]``) are not markers."""
    code = _code_spans(text)
    removed = 0
    out: list[str] = []
    last = 0
    for match in MARKER.finditer(text):
        if _inside(match.start(), code):
            continue
        numbers = parse_numbers(match.group(1))
        valid = list(dict.fromkeys(n for n in numbers if 1 <= n <= n_blocks))
        removed += len(numbers) - len([n for n in numbers if 1 <= n <= n_blocks])
        if len(valid) == len(numbers):
            continue  # unchanged marker
        before = text[last : match.start()]
        if valid:
            out.append(before + "[" + ", ".join(str(n) for n in valid) + "]")
        else:
            # The space before a dropped marker goes too: "claim [9]." becomes "claim.".
            out.append(before.rstrip(" \t"))
        last = match.end()
    out.append(text[last:])
    return "".join(out), removed


_MARKER_LINE = re.compile(r"^[ \t]*(?:\[\s*\d{1,4}(?:\s*,\s*\d{1,4})*\s*\][ \t]*)+\n?", re.M)


def drop_repeated_marker_lines(text: str) -> str:
    """``text`` without lines that hold only citation markers whose blocks the rest of the
    answer cites already (the 1.5B model puts a lone "[1]" under its code block after citing
    [1] in the sentence that introduced it). A marker line that is the only citation of its
    block stays: it cites the code above it."""
    code = _code_spans(text)
    lines = [m for m in _MARKER_LINE.finditer(text) if not _inside(m.start(), code)]
    if not lines:
        return text
    kept = text
    for line in reversed(lines):
        rest = kept[: line.start()] + kept[line.end() :]
        rest_code = _code_spans(rest)
        elsewhere = {
            n
            for m in MARKER.finditer(rest)
            if not _inside(m.start(), rest_code)
            for n in parse_numbers(m.group(1))
        }
        if set(parse_numbers(line.group(0))) <= elsewhere:
            kept = rest
    if kept == text:
        return text
    return re.sub(r"\n{3,}", "\n\n", kept).rstrip()


def split_answer(text: str) -> list[AnswerSentence]:
    """Sentences of an answer, each owning the markers that follow it ("Claim. [1] Next."
    gives the "[1]" to "Claim."). Headings are not claims and are left out."""
    code = _code_spans(text)
    # Lines of fenced blocks (fences included) are code; a prose line with "=" is not.
    blocks = [m.span() for m in _CODE_BLOCK.finditer(text)]
    pieces: list[list[int]] = []  # [start, end] spans
    for sentence in split_sentences(text):
        if sentence.kind == "heading":
            continue
        start, end = sentence.start, sentence.end
        lead = _LEADING_MARKERS.match(text, start)
        if pieces and lead is not None and lead.end() > start:
            # The markers belong to the previous sentence.
            pieces[-1][1] = lead.end()
            start = lead.end()
            while start < end and text[start].isspace():
                start += 1
        if start < end:
            pieces.append([start, end])
    result = []
    for start, end in pieces:
        chunk = text[start:end]
        numbers = [
            n
            for m in MARKER.finditer(chunk)
            if not _inside(start + m.start(), code)
            for n in parse_numbers(m.group(1))
        ]
        result.append(
            AnswerSentence(
                chunk, start, end, list(dict.fromkeys(numbers)), is_code=_inside(start, blocks)
            )
        )
    return result


def lexical_recall(sentence: str, evidence: str) -> float:
    """Share of the sentence's content words that occur in ``evidence`` (1.0 when the
    sentence has none: it claims nothing checkable)."""
    words = content_words(sentence)
    if not words:
        return 1.0
    return len(words & content_words(evidence)) / len(words)


def best_sentence(claims: list[str], hit: Hit, cache: SentenceEmbeddings) -> Sentence | None:
    """The sentence of ``hit``'s chunk that best supports any of ``claims`` (None for a chunk
    without sentences)."""
    for claim in claims:
        # A claim copied from the chunk is supported by the sentence it was copied from.
        for sentence in cached_sentences(hit.chunk.text):
            if sentence.kind != "heading" and len(claim) >= 20 and claim in sentence.text:
                return sentence
    sentences, vectors = cache.get(hit.chunk.text)
    candidates = [i for i, s in enumerate(sentences) if s.kind != "heading"] or list(
        range(len(sentences))
    )
    if not candidates:
        return None
    best_i, best_score = candidates[0], -np.inf
    sims = vectors @ cache.embed_texts(claims).T if claims else np.zeros((len(sentences), 0))
    # Claims outer: on ties (several verbatim claims) the first claim's sentence wins.
    for j, claim in enumerate(claims):
        for i in candidates:
            score = EMBEDDING_WEIGHT * float(sims[i, j]) + (1 - EMBEDDING_WEIGHT) * lexical_recall(
                claim, sentences[i].text
            )
            if score > best_score:
                best_i, best_score = i, score
    return sentences[best_i]


def best_quote(claims: list[str], hit: Hit, cache: SentenceEmbeddings) -> str:
    """The quote of ``hit`` for the answer sentences ``claims`` that cite it: the sentence that
    best supports each of the first :data:`MAX_QUOTED_CLAIMS` claims, verbatim. Several
    sentences are quoted as the chunk's span from the first to the last when that is short
    (:data:`MAX_SPAN_CHARS`), else joined by " … ", each part verbatim."""
    text = hit.chunk.text
    found = {
        s.start: s
        for claim in claims[:MAX_QUOTED_CLAIMS]
        if (s := best_sentence([claim], hit, cache))
    }
    if not found:
        return text.strip()[:300]
    chosen = [found[start] for start in sorted(found)]
    if len(chosen) == 1:
        return chosen[0].text
    if chosen[-1].end - chosen[0].start <= MAX_SPAN_CHARS:
        return text[chosen[0].start : chosen[-1].end]
    return QUOTE_SEPARATOR.join(s.text for s in chosen)


def quoted_parts(quote: str) -> list[str]:
    """The verbatim pieces of a citation's quote (one, or those joined by " … ")."""
    return quote.split(QUOTE_SEPARATOR)


MAX_BARE_WORDS = 2  # an answer sentence this short is a bare value ("16", "ReLU")


def quoted_claim(sentence: str, query: str) -> str:
    """What a quote is chosen for: the answer sentence, and for a bare value ("16 [2]" to
    "what is lora_alpha?") the question with it. The value alone matched "r=16," as well as
    "lora_alpha=16,", and the quote showed the line about another parameter."""
    if query and len(content_words(sentence)) <= MAX_BARE_WORDS:
        return f"{sentence} {query}"
    return sentence


def build_citations(
    text: str,
    hits: list[Hit],
    embedder: Embedder,
    cache: SentenceEmbeddings | None = None,
    query: str = "",
) -> list[Citation]:
    """One citation per context block cited in ``text`` (markers must already be clean),
    ordered by block number, each quoting the chunk sentences that best support the answer
    sentences citing it (:func:`best_quote`; a bare value with the ``query`` that asked for
    it, :func:`quoted_claim`)."""
    cache = cache or SentenceEmbeddings(embedder)
    sentences = split_answer(text)
    claims_by_n: dict[int, list[str]] = {}
    for sentence in sentences:
        for n in sentence.numbers:
            if 1 <= n <= len(hits):
                claims_by_n.setdefault(n, []).append(quoted_claim(sentence.plain, query))
    citations = []
    for n in sorted(claims_by_n):
        hit = hits[n - 1]
        claims = claims_by_n[n]
        # Each sentence citing n is shown its support (the first two: answers are short).
        quote = best_quote(claims, hit, cache)
        chunk = hit.chunk
        citations.append(
            Citation(
                n=n,
                chunk_id=chunk.id,
                source=chunk.source,
                title=chunk.title,
                url=chunk.url,
                quote=quote,
                section=chunk.section,
            )
        )
    return citations


def postprocess(
    answer_text: str, hits: list[Hit], embedder: Embedder, cache: SentenceEmbeddings | None = None
) -> tuple[str, list[Citation], int]:
    """Clean an answer's markers and build its citations: ``(clean_text, citations,
    removed)`` where ``removed`` counts marker numbers that pointed at no context block."""
    clean_text, removed = clean_markers(answer_text, len(hits))
    return clean_text, build_citations(clean_text, hits, embedder, cache), removed
