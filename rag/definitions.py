"""Definitions: where the corpus says what a thing is, for "what is X?" questions.

"whats lora" retrieved five chunks of the peft LoRA guide about its options (rank patterns,
LoRA-FA, LoRA+, adapters) and not the guide's "Low-Rank Adaptation (LoRA) is a PEFT method that
decomposes a large matrix into two smaller low-rank matrices" (hybrid rank 71: every chunk of
the guide says "LoRA", and the short tip that defines it is no closer to the question in
MiniLM's space). The model then answered from its own knowledge, and the answer was rightly
dropped as unsupported. "what is a tensor" and "what is a synset" failed the same way.

So a question that asks what a term is (:func:`defined_term`) is answered from a chunk that
defines it, when one exists: a sentence that starts with the term and says it "is a …"
("Tensors are a specialized data structure …", "Low-Rank Adaptation (LoRA) is a …"), or a
label line ("`Synset`: a set of synonyms …", "Tensor: 3D+ array …"). The chunks holding the
term are found with the BM25 index, so topic filters apply. When no retrieved hit defines the
term as strongly as the best such chunk, that chunk takes the last hit's place
(:func:`with_definition`), and the context cut keeps the defining sentence first
(rag.pipeline.select_context). The check is lexical: a question that is not a definition
question, or a term the corpus never defines, leaves the hits as they were.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from rag.types import Chunk, Hit

if TYPE_CHECKING:
    from rag.lexical import LexicalIndex
    from rag.retrieval.base import Filters

# "what is X", "whats X", "what are Xs", "define X", "meaning of X", "what does X mean",
# "X meaning", "explain X": the term, with an article and a trailing "?" left off.
_ARTICLE = r"(?:(?:an?|the)\s+)?"
_ASKS = (
    re.compile(rf"^(?:what|wat)\s*(?:is|are|'s|’s|s)\s+{_ARTICLE}(?P<term>.+?)$", re.I),
    re.compile(rf"^(?:define|definition of|meaning of|explain)\s+{_ARTICLE}(?P<term>.+?)$", re.I),
    re.compile(rf"^what\s+(?:does|do)\s+{_ARTICLE}(?P<term>.+?)\s+(?:mean|stand for)$", re.I),
    re.compile(rf"^{_ARTICLE}(?P<term>.+?)\s+(?:meaning|definition)$", re.I),
)
# Words that make the rest a question about something else than what the term is: "what is
# the default …", "what is KL divergence used for", "what's the difference between …".
_NOT_A_TERM = re.compile(
    r"\b(of|for|between|default|difference|used|use|does|do|did|when|to|which|how|why|best|"
    r"good|if|with|vs|versus|and|or|it|its|this|that|these|those|they|them|page|i|my|you|"
    r"your|should|can|could|would|will|there|here|value|size|number|version)\b",
    re.I,
)
_SCOPE = re.compile(r"\s+(?:in|from|on)\s+[\w.\-]+$", re.I)  # "broadcasting in numpy"
_OWNER = re.compile(r"^[\w.\-]+(?:'s|’s)\s+")  # "spacy's Doc" -> "Doc"
MAX_TERM_WORDS = 4

# Strengths: a sentence saying the term "is a …" defines it; a label line ("Tensor: 3D+ …")
# describes it. A hit that defines the term as strongly as any chunk does is left in place.
DEFINES, LABELS = 2, 1
# How many of the term's BM25 hits are searched for a definition.
SEARCH_DEPTH = 200

_MARKUP = "-*>#` \t\n["  # list, quote and heading marks, code ticks, a link's bracket
_START = r"(?:^|(?<=\n)|(?<=[.!?]\s))[-*>#\s`\[]*"
_MARK = r"[*`_\]]{0,2}"
_IS_A = r",?\s+(?:is|are)\s+(?:an?|the|one of)\s|\s+(?:refers to|stands for|is defined as)\s"


def defined_term(question: str) -> str | None:
    """The term ``question`` asks the definition of ("whats lora" -> "lora"; "what's
    broadcasting in numpy?" -> "broadcasting"), or None when it asks something else."""
    text = re.sub(r"[?!.\s]+$", "", question.strip())
    for asks in _ASKS:
        match = asks.match(text)
        if match is None:
            continue
        term = _OWNER.sub("", _SCOPE.sub("", match.group("term").strip()))
        words = term.split()
        # "celery apply_async countdown=60 expires=120 meaning" asks what code does.
        if 0 < len(words) <= MAX_TERM_WORDS and not _NOT_A_TERM.search(term) and "=" not in term:
            return term
    return None


def _spellings(term: str) -> str:
    """A regex alternation of ``term`` in singular and plural, with a space or hyphen between
    its words ("kd-tree", "kd tree")."""
    forms = {term, term[:-1] if term.lower().endswith("s") and len(term) > 3 else term + "s"}
    return "|".join(
        r"[-\s]?".join(re.escape(part) for part in re.split(r"[-\s]+", form))
        for form in sorted(forms, key=len, reverse=True)
    )


@lru_cache(maxsize=256)  # built once per term, not once per chunk searched
def _patterns(term: str) -> tuple[tuple[int, re.Pattern[str]], ...]:
    spelled = rf"{_MARK}(?:{_spellings(term)}){_MARK}"
    flags = re.I | re.M
    return (
        # "Tensors are a …", "The Doc is the …", "LoRA (Low-Rank …) is a …"
        (DEFINES, re.compile(rf"{_START}{_ARTICLE}{spelled}(?:\s*\([^)\n]{{1,80}}\))?(?:{_IS_A})", flags)),
        # "Low-Rank Adaptation (LoRA) is a …": a long name, then the term in brackets
        (DEFINES, re.compile(rf"{_START}[A-Z][\w\-]*(?:\s+[\w\-]+){{0,5}}\s*\(\s*{spelled}\s*\)(?:{_IS_A})", flags)),
        # "`Synset`: a set of synonyms …", "Tensor: 3D+ array …", "# LoRA: add small …"
        (LABELS, re.compile(rf"{_START}{_ARTICLE}{spelled}\s*(?::|—|–)[ \t]+\S", flags)),
    )  # fmt: skip


def definitions_of(text: str, term: str) -> tuple[int, list[str]]:
    """The strength (DEFINES, LABELS or 0) of the strongest definitions of ``term`` in
    ``text``, and their sentences in text order ((0, []) when it has none)."""
    for strength in (DEFINES, LABELS):
        starts: dict[int, str] = {}
        for _, pattern in (p for p in _patterns(term) if p[0] == strength):
            for match in pattern.finditer(text):
                rest = text[match.start() : match.end()]
                start = match.end() - len(rest.lstrip(_MARKUP))  # the sentence, not its markup
                end = re.search(r"(?<=[.!?])\s|\n|$", text[match.end() :])
                starts[start] = text[start : match.end() + (end.start() if end else 0)].strip()
        if starts:
            return strength, [starts[start] for start in sorted(starts)]
    return 0, []


def with_definition(
    question: str,
    hits: Sequence[Hit],
    index: LexicalIndex,
    filters: Filters | None = None,
) -> list[Hit]:
    """``hits``, with the chunk that best defines the term ``question`` asks about in place of
    the last hit when no hit defines it as strongly; ``hits`` as they are for any other
    question, or when the corpus has no stronger definition. Of the strongest definitions the
    one nearest the start of its page is taken, since a page opens by saying what its subject
    is ("Celery is a task queue with batteries included" opens the first-steps guide; "Celery
    is a project with minimal funding" is the introduction's fourth chunk), then the one BM25
    ranks first for the term."""
    term = defined_term(question)
    if term is None or not hits:
        return list(hits)
    have = max(definitions_of(hit.chunk.text, term)[0] for hit in hits)
    found: list[tuple[int, int, int, Chunk]] = []  # (-strength, position, BM25 rank, chunk)
    for rank, (chunk, _score) in enumerate(index.search(term, SEARCH_DEPTH, filters)):
        strength = definitions_of(chunk.text, term)[0]
        if strength > have:
            found.append((-strength, chunk.position, rank, chunk))
    if not found:
        return list(hits)
    best = min(found, key=lambda f: f[:3])[3]
    if any(hit.chunk.id == best.id for hit in hits):
        return list(hits)
    last = hits[-1]
    return [*hits[:-1], Hit(chunk=best, score=last.score, rank=last.rank, retriever=last.retriever)]


def definitions_in(question: str, hits: Sequence[Hit]) -> list[str]:
    """The sentences of ``hits`` that define the term ``question`` asks about, strongest
    first ([] for other questions): the context cut keeps them."""
    term = defined_term(question)
    if term is None:
        return []
    found = [definitions_of(hit.chunk.text, term) for hit in hits]
    ordered = sorted((f for f in found if f[0]), key=lambda f: -f[0])
    return [sentence for _, sentences in ordered for sentence in sentences]


def unnamed_term(question: str, cited_passages: Sequence[str]) -> list[str]:
    """``[term]`` when ``question`` asks what a term is and none of ``cited_passages`` names
    it; else []. A definition comes from a passage about the thing: "what is flash
    attention" was answered "Flash attention is a technique introduced in the Transformer
    architecture (2017) …", citing the page's line on self-attention, which never says
    "flash"."""
    term = defined_term(question)
    if term is None or not cited_passages:
        return []
    named = re.compile(rf"(?<![\w-])(?:{_spellings(term)})", re.I)
    if any(named.search(passage) for passage in cited_passages):
        return []
    # Or each of its words, in any order or spelling ("kd tree" in ``KDTree``).
    text = " ".join(cited_passages).lower()
    words = [w for w in re.split(r"[\s\-()]+", term.lower()) if w]
    return [] if all(word in text for word in words) else [term]
