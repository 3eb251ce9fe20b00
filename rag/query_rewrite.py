"""Turn a follow-up question into a standalone search query, without an LLM.

"and what about its rank?" after "How does LoRA work in peft?" retrieves nothing useful on
its own; appending the salient terms of the conversation ("LoRA peft") does. The rewrite is
deterministic and only applies when the question looks dependent on context (pronouns,
"and …"/"what about …" openings, or very short questions).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from rag.coverage import one_edit_apart, word_base
from rag.shorthand import ABBREVIATIONS, DROPPED, FILLER_WORDS, spell_out
from rag.types import Turn

log = logging.getLogger(__name__)

# Words that point back to something said earlier.
ANAPHORA: frozenset[str] = frozenset(
    {
        "it",
        "its",
        "it's",
        "they",
        "them",
        "their",
        "theirs",
        "that",
        "this",
        "those",
        "these",
        "he",
        "she",
        "his",
        "her",
        "one",
        "ones",
        "there",
        "same",
        "former",
        "latter",
        "above",
    }
)
# Openings that continue the previous question ("and for numpy?", "what about ...").
CONTINUATIONS: tuple[str, ...] = (
    "and ",
    "what about",
    "how about",
    "what of",
    "also ",
    "same for",
    "same with",
    "but ",
    "or ",
    "then ",
    "so ",
)
SHORT_QUESTION_WORDS = 3  # "why?", "any example?", "and numpy?"

# Not salient: English function words plus question and filler words.
_NOT_SALIENT_WORDS = """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during each
    few for from further had has have having he her here hers herself him himself his how i
    if in into is it its itself just me more most my myself no nor not now of off on once
    only or other our ours out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your
    yours yourself yourselves
    example examples explain tell show give mean means meaning use used uses using work
    works working get gets make makes need needs want know like please thanks thank okay ok
    ok way ways thing things something anything good better best well really much many
    lot lots kind sort one ones vs versus difference different instead possible"""
_NOT_SALIENT: frozenset[str] = frozenset(_NOT_SALIENT_WORDS.split())
_TERM = re.compile(r"[A-Za-z0-9]+(?:[._\-+][A-Za-z0-9]+)*")
_CITATION_MARKER = re.compile(r"\[\d+\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_USER_TERMS = 8
MAX_ASSISTANT_TERMS = 3


def salient_terms(text: str) -> list[str]:
    """Content terms of ``text`` in order of first appearance (identifiers kept whole,
    stopwords, question words and pure numbers dropped, de-duplicated case-insensitively)."""
    seen: set[str] = set()
    terms: list[str] = []
    for term in _TERM.findall(_CITATION_MARKER.sub(" ", text)):
        key = term.lower()
        if key in _NOT_SALIENT or key in seen or key.isdigit() or len(key) < 2:
            continue
        seen.add(key)
        terms.append(term)
    return terms


def needs_context(question: str) -> bool:
    """Whether ``question`` looks like a follow-up that cannot stand alone."""
    lowered = question.strip().lower()
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", lowered)
    if len(_TERM.findall(lowered)) <= SHORT_QUESTION_WORDS:
        return True
    if lowered.startswith(CONTINUATIONS):
        return True
    return any(word in ANAPHORA for word in words)


def _looks_like_name(term: str) -> bool:
    """Identifiers and proper names: a capital letter, a digit or a joining character."""
    return any(c.isupper() or c.isdigit() or c in "._-+" for c in term)


def _first_sentence(text: str) -> str:
    """The first sentence, its first word de-capitalised unless it is a name like "LoRA"."""
    sentence = _SENTENCE_END.split(text.strip(), maxsplit=1)[0] if text.strip() else ""
    first, _, rest = sentence.partition(" ")
    if first[:1].isupper() and first[1:].islower():
        first = first.lower()
    return f"{first} {rest}".strip()


def condense_query(question: str, history: list[Turn], always: bool = False) -> str:
    """A standalone search query for ``question`` given the earlier turns of ``history``.

    Unchanged when there is no history or the question stands on its own (unless
    ``always``: a model judged it a follow-up); otherwise the
    question followed by the salient terms of the last user turn (and of the one before when
    that turn was itself a follow-up) and up to three name-like terms (identifiers, capitalised
    words) of the first sentence of the last assistant answer.
    """
    if not history or not (always or needs_context(question)):
        return question
    present = {t.lower() for t in _TERM.findall(question)}
    extra: list[str] = []

    def add(terms: list[str], limit: int) -> None:
        added = 0
        for term in terms:
            if added >= limit:
                return
            if term.lower() not in present:
                present.add(term.lower())
                extra.append(term)
                added += 1

    user_turns = [t.content for t in history if t.role == "user" and t.content.strip()]
    # Walk back while the earlier question was itself a follow-up (at most two turns).
    for content in reversed(user_turns[-2:]):
        add(salient_terms(content), MAX_USER_TERMS)
        if not needs_context(content):
            break
    assistant_turns = [t.content for t in history if t.role == "assistant" and t.content.strip()]
    if assistant_turns:
        # Lightly: only name-like terms of the answer's first sentence, not its prose.
        answer_terms = salient_terms(_first_sentence(assistant_turns[-1]))
        add([t for t in answer_terms if _looks_like_name(t)], MAX_ASSISTANT_TERMS)
    if not extra:
        return question
    return f"{question.strip()} {' '.join(extra)}"


# --- condensing with a model ---------------------------------------------------------------------
CONDENSE_SYSTEM = (
    "You rewrite a follow-up question from a conversation about machine learning into one "
    "standalone question. Replace words like it, that, there, this one with what they refer "
    "to in the conversation. Keep the user's wording otherwise. Reply with the question only."
)
MAX_CONDENSED_CHARS = 300
CONDENSE_MAX_TOKENS = 48
# How many earlier turns the rewrite sees (the last ones matter; long histories cost prefill).
CONDENSE_TURNS = 4

Rewrite = Callable[[list[dict[str, str]], int], str]


def condense_messages(question: str, history: list[Turn]) -> list[dict[str, str]]:
    """The chat messages asking a model to rewrite ``question`` as a standalone question."""
    lines = []
    for turn in history[-CONDENSE_TURNS:]:
        speaker = "User" if turn.role == "user" else "Assistant"
        lines.append(f"{speaker}: {' '.join(turn.content.split())[:600]}")
    conversation = "\n".join(lines)
    user = f"Conversation:\n{conversation}\n\nFollow-up: {question}\n\nStandalone question:"
    return [{"role": "system", "content": CONDENSE_SYSTEM}, {"role": "user", "content": user}]


def clean_rewrite(text: str) -> str | None:
    """The model's rewrite as one line, or None when it is unusable (empty, too long)."""
    line = " ".join(text.strip().strip('"').split())
    for prefix in ("Standalone question:", "Question:"):
        if line.lower().startswith(prefix.lower()):
            line = line[len(prefix) :].strip()
    if not line or len(line) > MAX_CONDENSED_CHARS:
        return None
    return line


# One-letter chat words and what they stand for: a rewrite may spell them out.
_CHAT_LETTERS: dict[str, str] = {"r": "are", "u": "you", "y": "why", "n": "and", "w": "with"}
# Words a good rewrite replaces by what they point at ("another way" -> "for one tensor"), or
# words of direction a good rewrite spells as the action ("and back to numpy?" after moving a
# tensor to the GPU -> "How can I convert a tensor to a NumPy array?").
_POINTERS = frozenset(
    {"a", "i", "another", "else", "previous", "earlier", "last", "back", "again", "instead"}
)
MIN_TYPO_TERM = 5  # a rewrite may correct a typo in a term this long ("pytroch")


def lost_terms(question: str, rewritten: str) -> list[str]:
    """The terms of ``question`` that ``rewritten`` lost: words that are neither function
    words, chat filler nor pointers back ("it", "that one"), found in the rewrite in no form
    (inflected, spelled out, a prefix of a longer word, one typo apart). The 1.5B model
    rewrote "what r should i use" after a LoRA question as "What should I use for fine-tuning a
    model with LoRA?": the question was about LoRA's ``r``, and the rewrite answers another."""
    said = {t.lower() for t in _TERM.findall(spell_out(rewritten))}
    said |= {part for t in said for part in re.split(r"[._\-+]", t)}
    bases = {word_base(w) for w in said}
    lost = []
    for term in dict.fromkeys(t.lower() for t in _TERM.findall(question)):
        if (
            term in _NOT_SALIENT or term in ANAPHORA or term in DROPPED or term in FILLER_WORDS
            or term in _POINTERS or (term.isdigit() and len(term) == 1)
        ):  # fmt: skip
            continue
        if term in said or word_base(term) in bases or _CHAT_LETTERS.get(term) in said:
            continue
        if any(long in said for long in ABBREVIATIONS.get(term, ())):
            continue  # "params" rewritten as "parameters"
        stem = word_base(term)
        if len(stem) >= 3 and any(w.startswith(stem) for w in said):
            continue  # "configs" rewritten as "configurations"
        if len(term) >= MIN_TYPO_TERM and any(one_edit_apart(term, w) for w in said):
            continue  # "pytroch" rewritten as "PyTorch"
        lost.append(term)
    return lost


def condense_with(rewrite: Rewrite, question: str, history: list[Turn]) -> str | None:
    """``question`` rewritten by a model (``rewrite(messages, max_tokens) -> text``); None
    when the model fails or answers with something unusable (the caller falls back to
    :func:`condense_query`). A rewrite that loses a term of the question (:func:`lost_terms`)
    gives way to the heuristic's query, which keeps every word of the question and adds the
    conversation's terms even where the heuristic alone would not have taken the question
    for a follow-up: the model did, and what it added is likely right."""
    from rag.errors import MlragError

    try:
        text = rewrite(condense_messages(question, history), CONDENSE_MAX_TOKENS)
    except MlragError as exc:
        log.warning("model condenser failed (%s); using the heuristic", exc)
        return None
    line = clean_rewrite(text)
    if line is None:
        return None
    lost = lost_terms(spell_out(question), line)
    if lost:
        log.info("model condenser lost %s from %r (%r); using the heuristic", lost, question, line)
        return condense_query(question, history, always=True)
    return line
