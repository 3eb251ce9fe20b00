"""Sentence splitting, content words and cached sentence embeddings.

Shared by the extractive generator (candidate sentences), citations (the quoted sentence of a
chunk) and grounding (support of answer sentences). Every sentence is a verbatim substring of
the text it came from, with its character span, so quotes can be checked and spans removed.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from rag.embeddings import Embedder

# prose: a sentence of running text; line: one line of a plain-text block (```text), quotable
# but not split into sentences; code, table, heading: lines callers usually skip.
SentenceKind = Literal["prose", "line", "code", "table", "heading"]

# Tokens ending in a period that do not end a sentence ("e.g. the", "vs. ROC").
_ABBREVIATIONS = frozenset(
    {
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "al",
        "fig",
        "figs",
        "eq",
        "eqs",
        "approx",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "no",
        "sec",
        "ch",
        "vol",
        "resp",
        "incl",
        "esp",
        "u.s",
        "st",
        "jr",
    }
)
# A candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")
_FENCE = re.compile(r"^\s*(```|~~~)\s*(\w*)")
# Fence languages whose content is text (rule-of-thumb lists, diagrams), not code.
_TEXT_FENCES = frozenset({"text", "txt", "plain", "plaintext", "none", "md", "markdown"})
_CODE_LINE = re.compile(
    r"^\s*(>>>|\$ |import \w|from [\w.]+ import |def \w+\(|class \w+[(:]|return\b|@\w+|"
    r"pip install|#include|[\w.]+\s*=\s*[\w.\[({\"']|[\w.]+\([^)]*\)\s*$|[{}\])]\s*$)"
)
_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*")
_TERMINAL = ".!?:;…\"'”’)]"
_SINGLE = "\x00single\x00"  # cache-key prefix of texts embedded whole (see embed_texts)

# Function words that say nothing about whether a claim is supported.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves may might must shall one two use used using uses via per within without
    """.split()  # noqa: SIM905 - a word list reads better as text
)


@dataclass(frozen=True)
class Sentence:
    """A sentence (or code/table/heading line) of a text: ``text == source[start:end]``."""

    text: str
    start: int
    end: int
    kind: SentenceKind = "prose"

    @property
    def is_prose(self) -> bool:
        """Running text or a plain-text line (not code, table or heading)."""
        return self.kind in ("prose", "line")


def _is_table_row(line: str) -> bool:
    stripped = line.strip()
    return (
        stripped.startswith("|")
        or stripped.count("|") >= 2
        or bool(re.fullmatch(r"[-=+:|─━═ ]{3,}", stripped))
    )


def _is_heading(line: str) -> bool:
    """Markdown/rst headings, and the short unpunctuated title lines of extracted web pages."""
    stripped = line.strip()
    if stripped.startswith("#") or re.fullmatch(r"[=\-~^*]{3,}", stripped):
        return True
    words = stripped.split()
    return 0 < len(words) <= 10 and stripped[-1] not in _TERMINAL + "," and stripped[0].isupper()


def _looks_like_code(line: str) -> bool:
    if line.startswith(("    ", "\t")) and line.strip():
        return True
    return bool(_CODE_LINE.match(line))


def _ends_sentence(text: str, boundary_start: int) -> bool:
    """Whether the punctuation at ``boundary_start`` really ends a sentence."""
    if text[boundary_start] != ".":
        return True
    token = re.search(r"(\S+)$", text[:boundary_start])
    if token is None:
        return True
    word = token.group(1).lower().lstrip("(\"'“")
    if word in _ABBREVIATIONS:
        return False
    # Initials ("J. Smith") and enumerations ("1.") do not end sentences.
    return not (len(word) == 1 and word.isalpha()) and not word.isdigit()


def _split_prose(line: str, offset: int) -> list[Sentence]:
    """Split one prose line into sentences, keeping exact spans."""
    sentences: list[Sentence] = []
    start = 0
    for match in _BOUNDARY.finditer(line):
        if not _ends_sentence(line, match.start()):
            continue
        following = line[match.end() : match.end() + 1]
        # A new sentence starts with a capital, digit, quote, bracket or marker.
        if following and not (
            following.isupper() or following.isdigit() or following in "\"'“([*-"
        ):
            continue
        piece = line[start : match.end()].rstrip()
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            sentences.append(
                Sentence(piece.strip(), offset + start + lead, offset + start + len(piece))
            )
        start = match.end()
    tail = line[start:]
    if tail.strip():
        lead = len(tail) - len(tail.lstrip())
        stripped = tail.strip()
        sentences.append(
            Sentence(stripped, offset + start + lead, offset + start + lead + len(stripped))
        )
    return sentences


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of ``text`` in order; code fences/lines, table rows and headings come back
    as single lines with their ``kind`` so callers can skip them."""
    sentences: list[Sentence] = []
    in_fence = False
    text_fence = False
    offset = 0
    for raw in text.splitlines(keepends=True):
        line = raw.rstrip("\r\n")
        line_start = offset
        offset += len(raw)
        if not line.strip():
            continue
        lead = len(line) - len(line.lstrip())
        whole = Sentence(line.strip(), line_start + lead, line_start + lead + len(line.strip()))
        fence = _FENCE.match(line)
        if fence:
            in_fence = not in_fence
            text_fence = in_fence and fence.group(2).lower() in _TEXT_FENCES
            sentences.append(Sentence(whole.text, whole.start, whole.end, "code"))
        elif text_fence:
            kind: SentenceKind = "table" if _is_table_row(line) else "line"
            sentences.append(Sentence(whole.text, whole.start, whole.end, kind))
        elif in_fence or _looks_like_code(line):
            sentences.append(Sentence(whole.text, whole.start, whole.end, "code"))
        elif _is_table_row(line):
            sentences.append(Sentence(whole.text, whole.start, whole.end, "table"))
        elif _is_heading(line):
            sentences.append(Sentence(whole.text, whole.start, whole.end, "heading"))
        else:
            sentences.extend(_split_prose(line, line_start))
    return sentences


@lru_cache(maxsize=16384)
def cached_sentences(text: str) -> tuple[Sentence, ...]:
    """:func:`split_sentences` memoised per text (chunks are split again on every answer)."""
    return tuple(split_sentences(text))


def _normalise(word: str) -> str:
    # A light plural fold so "embeddings" supports "embedding"; no stemmer dependency.
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """Lower-cased, plural-folded words of ``text`` without stopwords."""
    return {
        _normalise(w)
        for w in (m.group(0).lower() for m in _WORD.finditer(text))
        if w not in STOPWORDS
    }


def word_count(text: str) -> int:
    """Number of words in ``text``."""
    return len(_WORD.findall(text))


class SentenceEmbeddings:
    """Sentences of texts and their embeddings, cached per text (a chunk's text determines
    its id, so this is a per-chunk cache) in a bounded LRU (entries are chunks and single
    sentences; 32k entries of 384-d vectors stay under ~60 MB)."""

    def __init__(self, embedder: Embedder, max_texts: int = 32768) -> None:
        self.embedder = embedder
        self._max_texts = max_texts
        self._cache: OrderedDict[str, tuple[list[Sentence], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def _lookup(self, text: str) -> tuple[list[Sentence], np.ndarray] | None:
        with self._lock:
            entry = self._cache.get(text)
            if entry is not None:
                self._cache.move_to_end(text)
            return entry

    def _store(self, text: str, entry: tuple[list[Sentence], np.ndarray]) -> None:
        with self._lock:
            self._cache[text] = entry
            while len(self._cache) > self._max_texts:
                self._cache.popitem(last=False)

    def get_many(self, texts: list[str]) -> list[tuple[list[Sentence], np.ndarray]]:
        """For each text, its sentences and an (n_sentences, d) array of unit vectors;
        everything not cached is embedded in one batch."""
        found: dict[str, tuple[list[Sentence], np.ndarray]] = {}
        missing: dict[str, list[Sentence]] = {}
        for text in texts:
            entry = self._lookup(text)
            if entry is not None:
                found[text] = entry
            elif text not in missing:
                missing[text] = list(cached_sentences(text))
        if missing:
            flat = [s.text for sents in missing.values() for s in sents]
            vectors = self.embedder.embed_documents(flat) if flat else np.zeros((0, 1), np.float32)
            row = 0
            for text, sents in missing.items():
                entry = (sents, vectors[row : row + len(sents)])
                row += len(sents)
                found[text] = entry
                self._store(text, entry)
                # Extractive answers quote these sentences verbatim: grounding then finds
                # their vectors here instead of embedding them again.
                for sentence, vector in zip(sents, entry[1], strict=True):
                    self._store(_SINGLE + sentence.text, ([sentence], vector[None, :]))
        return [found[t] for t in texts]

    def get(self, text: str) -> tuple[list[Sentence], np.ndarray]:
        """Sentences of one text and their embeddings."""
        return self.get_many([text])[0]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of short texts (answer sentences), each cached as a one-sentence
        text so grounding and citations embed an answer only once."""
        if not texts:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text in texts:
            entry = self._lookup(_SINGLE + text)
            if entry is not None:
                found[text] = entry[1][0]
            elif text not in missing:
                missing.append(text)
        if missing:
            vectors = self.embedder.embed_documents(missing)
            for text, vector in zip(missing, vectors, strict=True):
                found[text] = vector
                self._store(_SINGLE + text, ([Sentence(text, 0, len(text))], vector[None, :]))
        return np.stack([found[t] for t in texts])
