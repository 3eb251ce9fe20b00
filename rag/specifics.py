"""The cheap, exact half of answer verification: every specific an answer states — a number,
a code identifier, a name — must occur in the context the model saw or in the question.

A small model that lacks the answer tends to invent exactly these ("the default is 100",
``lr_scheduler=cosine``, "DeepSpeed recommends ..."), while its paraphrases of what the
context says keep them. Embedding support (rag.grounding) cannot tell "0.1" from "0.01"; this
check can. Matching is on rag.qa's normalised text (case, markup and whitespace aside).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rag.qa import normalize_for_match

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:e-?\d+)?%?")
_BACKTICKED = re.compile(r"`([^`\n]{1,80})`")
# Identifiers that look like code: dotted names, snake_case, calls, CamelCase / mixed case.
_DOTTED = re.compile(r"\b[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+\b")
_SNAKE = re.compile(r"\b[A-Za-z]\w*_\w+\b")
_CALL = re.compile(r"\b([A-Za-z_]\w*)\(")
_MIXED = re.compile(r"\b(?:[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*|[A-Z]{2,}[a-z]*\d*)\b")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]{2,}\b")
# Capitalised words that are not names (sentence openers and common words of answers).
_NOT_NAMES = frozenset(
    """The This That These Those There Then Use Using Set Setting For When With Without Yes No
    It Its In On At To If Or And But As By An Of From Each Every Both Only Also However Instead
    Because Since Not Note See Use Higher Lower More Less Most Least Add After Before Call Pass
    Choose Train Training Test Testing Apply Try Keep Make Start Stop Default Defaults Here
    Answer Question Context Block Passage Corpus Sources Source""".split()  # noqa: SIM905
)


def _numbers(text: str) -> set[str]:
    found = set()
    for match in _NUMBER.finditer(text):
        number = match.group(0).rstrip("%").replace(",", "")
        found.add(number)
    return found


def specifics(sentence: str) -> set[str]:
    """The checkable specifics of ``sentence``: numbers (commas dropped), code identifiers
    (backticked text, dotted and snake_case names, calls, CamelCase) and capitalised names
    that do not open the sentence."""
    found = _numbers(sentence)
    found.update(m.group(1).strip() for m in _BACKTICKED.finditer(sentence))
    for pattern in (_DOTTED, _SNAKE, _MIXED):
        found.update(m.group(0) for m in pattern.finditer(sentence))
    found.update(m.group(1) for m in _CALL.finditer(sentence))
    words = sentence.split()
    opener = words[0].strip("\"'(*") if words else ""
    for match in _CAPITALISED.finditer(sentence):
        word = match.group(0)
        if word != opener and word not in _NOT_NAMES:
            found.add(word)
    return {s for s in found if s}


def _searchable(texts: Iterable[str]) -> tuple[str, str]:
    """The sources as normalised text, and with digit groupings removed (for numbers)."""
    joined = normalize_for_match("\n".join(texts))
    return joined, joined.replace(",", "")


def missing_specifics(sentence: str, sources: Iterable[str]) -> list[str]:
    """The specifics of ``sentence`` that occur in none of ``sources`` (sorted)."""
    text, digits = _searchable(sources)
    missing = []
    for item in specifics(sentence):
        needle = normalize_for_match(item)
        if not needle:
            continue
        if item[:1].isdigit():
            # A number must stand on its own: "0.1" is not in "0.01", "1" not in "16".
            pattern = rf"(?<![\d.]){re.escape(needle.replace(',', ''))}(?![\d])"
            if not re.search(pattern, digits):
                missing.append(item)
        elif needle not in text:
            missing.append(item)
    return sorted(missing)


# A number is only as good as what it is attached to: the 1.5B model answers "which learning
# rate does the page recommend?" with "a learning rate of 32" because ``lora_alpha=32`` is in
# the context. So each number of an answer must also share a word with what surrounds one of
# its occurrences in the context (or the question).
# What an answer says a number is mostly precedes it ("a learning rate of 32", "the LoRA model
# is 2e-4"); what follows is often the question's own words ("... for full fine-tuning").
ANSWER_WORDS_BEFORE = 3  # content words before the number in the answer sentence
ANSWER_WORDS_AFTER = 2  # ... and after it
SOURCE_WINDOW_WORDS = 8  # content words either side of each of its occurrences in a source
_BINDING_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]{2,}")
STEM_CHARS = 5  # "trained" ~ "training", "parameters" ~ "params" is not attempted


def _content(words: list[str]) -> list[str]:
    from rag.sentences import STOPWORDS

    return [w.lower()[:STEM_CHARS] for w in words if w.lower() not in STOPWORDS]


def _near(text: str, start: int, end: int, before: int, after: int) -> set[str]:
    """The stemmed content words, ``before`` of them before ``text[start:end]`` and ``after``
    after it (stopwords are skipped, not counted)."""
    preceding = _content(_BINDING_WORD.findall(text[:start]))[-before:] if before else []
    following = _content(_BINDING_WORD.findall(text[end:]))[:after] if after else []
    return {*preceding, *following}


# A number no answer word ties to the question needs a question word this close in a source
# (the words before a number say what it is: "learning_rate = 2e-4", "2020 : GPT-3 — 175B").
QUESTION_WORDS_BEFORE = 3
QUESTION_WORDS_AFTER = 2
FRAGMENT_WORDS = 2  # an answer sentence with at most this many content words is a fragment


def _asked_about(asked: set[str], occurrences: list[tuple[str, re.Match[str]]]) -> bool:
    """Whether some occurrence of a number (a source text and the match in it) has a word of
    the question close by (:data:`QUESTION_WORDS_BEFORE`, :data:`QUESTION_WORDS_AFTER`)."""
    return any(
        asked & _near(text, m.start(), m.end(), QUESTION_WORDS_BEFORE, QUESTION_WORDS_AFTER)
        for text, m in occurrences
    )


def unbound_numbers(sentence: str, sources: Iterable[str], query: str = "") -> list[str]:
    """The numbers of ``sentence`` that occur in the sources only among unrelated words: no
    content word near the number in the sentence is near any of its occurrences in a source
    (sorted). A number with no content word around it (a bare "16 [3]") is checked against
    the words of ``query``, the question it answers: "and alpha?" answered with the 16 of
    ``r=16`` is unbound. With a query, a number in a short fragment must also be about it:
    the fragment shares a word with the query, or one of the number's occurrences has a query
    word close by. A number found in no source is :func:`missing_specifics`'s business, and a
    bare number without a query has nothing to check."""
    texts = [normalize_for_match(t).replace(",", "") for t in sources]
    plain = normalize_for_match(sentence)
    asked = set(_content(_BINDING_WORD.findall(normalize_for_match(query))))
    sentence_words = set(_content(_BINDING_WORD.findall(plain)))
    # A short fragment ("175B parameters") must be about the question; a longer sentence says
    # what its number is, and the support check reads it.
    fragment = bool(asked) and len(sentence_words) <= FRAGMENT_WORDS
    unbound = set()
    for match in _NUMBER.finditer(plain):
        number = match.group(0).rstrip("%").replace(",", "")
        said = _near(plain, match.start(), match.end(), ANSWER_WORDS_BEFORE, ANSWER_WORDS_AFTER)
        said = said or asked
        if not said:
            continue
        pattern = re.compile(rf"(?<![\d.]){re.escape(number)}(?![\d])")
        occurrences = [(text, m) for text in texts for m in pattern.finditer(text)]
        if not occurrences:
            continue
        if not any(
            said & _near(text, m.start(), m.end(), SOURCE_WINDOW_WORDS, SOURCE_WINDOW_WORDS)
            for text, m in occurrences
        ):
            unbound.add(number)
        elif fragment and not asked & sentence_words and not _asked_about(asked, occurrences):
            # Bound, but to something the question does not ask about: "how many images does
            # ImageNet contain?" answered "175B parameters" from the GPT-3 line.
            unbound.add(number)
    return sorted(unbound)


def _number_texts(blocks: Iterable[str]) -> list[str]:
    """``blocks`` as numbers are matched in them: normalised, digit groupings removed."""
    return [normalize_for_match(b).replace(",", "") for b in blocks]


def _states(number: str, text: str) -> bool:
    """Whether ``text`` (see :func:`_number_texts`) states ``number`` as a whole number."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) is not None


def blocks_with_numbers(sentence: str, blocks: list[str]) -> set[int] | None:
    """The blocks (1-based) that state every number of ``sentence`` found in any block, or
    None when the sentence states no such number or no single block states them all. A
    citation for "the learning rate is 2e-4" belongs with the block that says 2e-4."""
    texts = _number_texts(blocks)
    found = []
    for number in _numbers(normalize_for_match(sentence)):
        holding = {n for n, text in enumerate(texts, start=1) if _states(number, text)}
        if holding:
            found.append(holding)
    if not found:
        return None
    common = set.intersection(*found)
    return common or None


def uncited_numbers(
    sentence: str, cited: Iterable[int], blocks: list[str], question: str
) -> list[str]:
    """The numbers of ``sentence`` that some of ``blocks`` (1-based) states but none of the
    ``cited`` ones does, and that the question does not state. A sentence stitched from two
    blocks has them: "at least 10GB … on a single 48GB GPU using QLoRA [1]" took "10GB" from
    spaCy's GPU note and cited the QLoRA line, which is about a 65B model."""
    texts = _number_texts(blocks)
    cited_texts = [texts[n - 1] for n in set(cited) if 1 <= n <= len(texts)]
    asked = _numbers(normalize_for_match(question))
    return [
        number
        for number in sorted(_numbers(normalize_for_match(sentence)) - asked)
        if any(_states(number, t) for t in texts)
        and not any(_states(number, t) for t in cited_texts)
    ]
