"""The verify stage: check a generated answer against the context before anyone reads it.

0. **Empty sentences**: a sentence that states nothing the context could confirm is dropped:
   one with no content word (a bare "No [1]" to a question the corpus does not answer) or
   one cut off before what it states ("The default learning rate is [1]." — the model wrote
   the citation where the value belongs). So is an answer that is nothing but a "Yes"/"No"
   restating the question ("Yes, XGBoost is better than Random Forest [1]."): it takes a side
   that no check can confirm. And a sentence that leans on a dropped one ("This function
   returns …" after the dropped sentence naming the function) goes with it.
1. **Specifics** (rag.specifics): a sentence that states a number, identifier or name found in
   neither the context the model saw nor the question is dropped — it is invented; so is one
   whose number occurs there only among unrelated words (the number is lifted from elsewhere).
2. **Citations checked**: a sentence that cites nothing, or only blocks that do not support it,
   gets the block that supports it best, when that support reaches the floor (small models
   often cite the wrong number; and every answer that is sent cites). A sentence that then
   still cites nothing is dropped: no block supports it, so no reader can check it. A sentence
   that states a number only an uncited block states is dropped: it stitched two blocks together;
   so is one claiming a default ("… by default [1]") that no block it cites states.
3. **Support** (rag.grounding): each remaining sentence's support by the blocks it cites.
4. **What was asked** (rag.asked): a question asking for a default (or for the version that
   added something) is answered only from cited blocks that state a default (or a version
   change); the kinds no cited block states are reported.

What is left, with the support scores, goes to rag.abstention.decide_on_answer, which turns an
answer with no supported sentence into an abstention; ``strict`` also drops every sentence
below ``support_threshold``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rag.asked import unbacked_claims, unstated_kinds
from rag.citations import MARKER_WITH_SPACE, AnswerSentence, split_answer
from rag.coverage import word_base
from rag.grounding import Grounding, _remove_spans, assess, support_scores
from rag.sentences import content_words
from rag.specifics import (
    blocks_with_numbers,
    missing_specifics,
    unbound_numbers,
    uncited_numbers,
)

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.sentences import SentenceEmbeddings
    from rag.types import Hit


@dataclass(frozen=True)
class Verification:
    """The checked answer text and what the check found."""

    text: str  # empty and invented sentences dropped, uncited claims cited
    grounding: Grounding  # support of each remaining sentence
    invented: list[str] = field(default_factory=list)  # sentences dropped for their specifics
    empty: list[str] = field(default_factory=list)  # sentences dropped as stating nothing
    recited: int = 0  # sentences whose citation the check added or replaced
    # Kinds of fact the question asks for ("default", "version added") that no cited block
    # states (rag.asked): the answer came from a passage about something else.
    unstated: list[str] = field(default_factory=list)


# Words a finished sentence does not end on: "… is [1]." states nothing after the verb.
_DANGLING_ENDS = frozenset(
    "is are was were be been being the a an than and or".split()  # noqa: SIM905
)
# Replies that take a side without saying anything the context could confirm.
_BARE_REPLIES = frozenset(
    "yes no yeah yep nope maybe sure correct incorrect true false right wrong depend".split()  # noqa: SIM905
)
_LAST_WORD = re.compile(r"([A-Za-z]+)\W*$")
_INLINE_CODE = re.compile(r"`[^`]*`")


def states_nothing(sentence: str) -> bool:
    """Whether ``sentence`` (markers removed) has no content word besides a bare reply ("No",
    "Yes.", "It depends."), or stops on a word a finished sentence does not end on (an
    article, a conjunction, "than" or a form of "be": prepositions may end one)."""
    if not content_words(sentence) - _BARE_REPLIES:
        return True
    last = _LAST_WORD.search(_INLINE_CODE.sub(" code ", sentence))  # "such as `a`" is finished
    return last is not None and last.group(1).lower() in _DANGLING_ENDS


def _without(text: str, dropped: list[AnswerSentence]) -> tuple[str, list[str]]:
    """``text`` without the ``dropped`` sentences, and their texts (markers removed)."""
    if not dropped:
        return text, []
    return _remove_spans(text, [(s.start, s.end) for s in dropped]), [s.plain for s in dropped]


_OPENING_REPLY = re.compile(r"\W*(yes|no)\b", re.I)
_NEGATIONS = frozenset({"not", "cannot", "never"})  # "No, you cannot …" takes the same side


def only_restates(sentence: str, question: str) -> bool:
    """Whether ``sentence`` (markers removed) is a bare "Yes"/"No" followed by words of the
    question alone, negated or not ("Yes, XGBoost is better than Random Forest [1]." to "is
    xgboost better than random forest"): it takes a side, and its citation shows at best a
    passage naming the same things."""
    if not _OPENING_REPLY.match(sentence):
        return False
    asked = {word_base(w) for w in content_words(question)}
    said = {
        word_base(w)
        for w in content_words(sentence) - _BARE_REPLIES
        if w not in _NEGATIONS and not w.endswith("n't")
    }
    return said <= asked


def drop_restating(text: str, question: str) -> tuple[str, list[str]]:
    """``text`` emptied when every sentence of it :func:`only_restates` the question (an
    answer with one more sentence keeps them all: that one says what the reply rests on)."""
    sentences = [s for s in split_answer(text) if s.plain and not s.is_code]
    if not sentences or not all(only_restates(s.plain, question) for s in sentences):
        return text, []
    return _without(text, sentences)


def drop_empty(text: str) -> tuple[str, list[str]]:
    """``text`` without the sentences that state nothing (:func:`states_nothing`)."""
    return _without(
        text,
        [s for s in split_answer(text) if s.plain and not s.is_code and states_nothing(s.plain)],
    )


def context_sources(context: list[Hit], question: str) -> list[str]:
    """Everything the model saw that an answer may repeat: the blocks' headings and texts,
    and the question."""
    texts = [question]
    for hit in context:
        chunk = hit.chunk
        texts.extend((chunk.title, chunk.section, chunk.text))
    return texts


def invents(sentence: str, sources: list[str], query: str = "") -> bool:
    """Whether ``sentence`` states a specific found in no source, or a number found only among
    unrelated words ("a learning rate of 32" where the context has ``lora_alpha=32``; a bare
    number among words unrelated to ``query``)."""
    return bool(missing_specifics(sentence, sources) or unbound_numbers(sentence, sources, query))


def drop_invented(text: str, sources: list[str], query: str = "") -> tuple[str, list[str]]:
    """``text`` without the sentences that invent specifics (:func:`invents`)."""
    return _without(
        text, [s for s in split_answer(text) if s.plain and invents(s.plain, sources, query)]
    )


def drop_stitched(text: str, context: list[Hit], question: str) -> tuple[str, list[str]]:
    """``text`` without the cited sentences that state a number only a block they do not
    cite states (:func:`rag.specifics.uncited_numbers`; run after :func:`recite`, which
    cites the block stating a sentence's numbers when one block states them all)."""
    blocks = [hit.chunk.text for hit in context]
    return _without(
        text,
        [
            s
            for s in split_answer(text)
            if s.plain and s.numbers and uncited_numbers(s.plain, s.numbers, blocks, question)
        ],
    )


def drop_unbacked_defaults(text: str, context: list[Hit]) -> tuple[str, list[str]]:
    """``text`` without the cited sentences that claim a default ("… by default [1]") which
    none of the blocks they cite states (:func:`rag.asked.unbacked_claims`)."""
    return _without(
        text,
        [
            s
            for s in split_answer(text)
            if s.plain and s.numbers and unbacked_claims(s.plain, cited_blocks(s.text, context))
        ],
    )


def drop_uncited(text: str) -> tuple[str, list[str]]:
    """``text`` without the sentences that still cite nothing once :func:`recite` has looked
    for a block supporting them: no block supports them, so nothing a reader could follow
    backs them ("They are used to filter out edges that are too weak or too strong." beside a
    cited sentence on cv.Canny)."""
    return _without(
        text,
        [s for s in split_answer(text) if s.plain and not s.is_code and not s.numbers],
    )


# A sentence opening on one of these leans on the sentence before it ("This function returns
# a dictionary …" after the sentence naming the function).
_LEANS_BACK = re.compile(r"\W*(this|these|that|those|it|its|they|their|such)\b", re.I)


def drop_orphans(original: str, text: str) -> tuple[str, list[str]]:
    """``text`` without the sentences that lean on a sentence of ``original`` the checks
    dropped: "To compute eigenvalues in NumPy, use `eigvals` [1]. This function returns a
    dictionary of eigenvalues … [1]." lost its first sentence (invented: no passage names
    `eigvals`), and the second, about SymPy's `eigenvals`, read as the answer."""
    order = [s.plain for s in split_answer(original) if s.plain and not s.is_code]
    current = [s for s in split_answer(text) if s.plain and not s.is_code]
    gone = set(order) - {s.plain for s in current}
    orphans = []
    for sentence in current:  # in answer order, so a chain of them goes together
        at = order.index(sentence.plain) if sentence.plain in order else 0
        if at > 0 and order[at - 1] in gone and _LEANS_BACK.match(sentence.plain):
            orphans.append(sentence)
            gone.add(sentence.plain)
    return _without(text, orphans)


# Support below which a cited block has nothing to do with the sentence citing it: "It is a
# type of gradient boosting algorithm that uses decision trees [2]" cited a SymPy block whose
# best line is "x + 1" (support 0.09). Such a sentence is treated as citing nothing.
UNRELATED_CITATION = 0.2


def _checked_citation(
    sentence: AnswerSentence,
    blocks: list[str],
    embedder: Embedder,
    cache: SentenceEmbeddings | None,
    floor: float,
) -> list[int] | None:
    """The block numbers ``sentence`` should cite, or None to leave it as it is."""
    cited = [n for n in sentence.numbers if 1 <= n <= len(blocks)]
    scores = support_scores([sentence.plain] * len(blocks), blocks, embedder, cache)
    stating = blocks_with_numbers(sentence.plain, blocks)
    if stating is not None:
        # A sentence stating a number cites a block that says it: support scores cannot tell
        # "2e-4" from a line about learning rates, so the numbers decide the blocks.
        kept = [n for n in cited if n in stating]
        candidates = sorted(stating)
    else:
        # Of several cited blocks, only those that support the sentence stay cited.
        kept = [n for n in cited if scores[n - 1] >= floor]
        candidates = list(range(1, len(blocks) + 1))
    best = max(candidates, key=lambda n: scores[n - 1])
    if not kept:
        if stating is not None or scores[best - 1] >= floor:
            return [best]
        if cited and max(scores[n - 1] for n in cited) < UNRELATED_CITATION:
            return []  # cites only blocks unrelated to it: as good as citing nothing
        return None
    # An uncited block that supports the sentence better is cited beside the kept ones (the
    # model copied a line from [1] and cited [2]: the reader should find the line).
    if best not in kept and scores[best - 1] > max(scores[n - 1] for n in kept):
        kept.append(best)
    return kept


def recite(
    text: str,
    context: list[Hit],
    embedder: Embedder,
    cache: SentenceEmbeddings | None,
    floor: float,
) -> tuple[str, int]:
    """``text`` with each sentence's citation checked: a sentence that cites nothing, or only
    blocks that do not support it (below ``floor``), gets the block that supports it best
    instead, when that one reaches ``floor`` (small models often cite the wrong block number);
    a sentence citing several blocks keeps those that support it, and is also given the block
    that supports it best when that one is uncited; a sentence stating a number cites a block
    that states it; a sentence citing only blocks unrelated to it (below UNRELATED_CITATION)
    and supported by none loses its markers, so :func:`drop_uncited` drops it. Returns the text
    and the number of sentences whose citations were added, replaced, narrowed or removed."""
    # Code lines are not cited one by one: a marker inside a code block breaks the code.
    sentences = [s for s in split_answer(text) if s.plain and not s.is_code]
    if not sentences or not context:
        return text, 0
    blocks = [hit.chunk.text for hit in context]
    edits = []
    for sentence in sentences:
        keep = _checked_citation(sentence, blocks, embedder, cache, floor)
        if keep is None or keep == sentence.numbers:
            continue
        body = MARKER_WITH_SPACE.sub("", sentence.text).rstrip()
        stop = body[-1] if body and body[-1] in ".!?" else ""
        body = body[: len(body) - len(stop)].rstrip()
        markers = " " + "".join(f"[{n}]" for n in keep) if keep else ""
        edits.append((sentence.start, sentence.end, sentence.text, f"{body}{markers}{stop}"))
    for start, end, old, new in sorted(edits, reverse=True):
        trailing = old[len(old.rstrip()) :]
        text = text[:start] + new + trailing + text[end:]
    return text, len(edits)


def verify(
    text: str,
    context: list[Hit],
    question: str,
    embedder: Embedder,
    support_threshold: float,
    cache: SentenceEmbeddings | None = None,
    query: str = "",
) -> Verification:
    """Drop empty and invented sentences, cite uncited ones, and score the support of what
    is left."""
    answered, empty = drop_empty(text)
    stating, restating = drop_restating(answered, question)
    kept, invented = drop_invented(stating, context_sources(context, question), query)
    recited, added = recite(kept, context, embedder, cache, support_threshold)
    backed_up, uncited = drop_uncited(recited)
    stitched_out, stitched = drop_stitched(backed_up, context, question)
    backed, unbacked = drop_unbacked_defaults(stitched_out, context)
    cited, orphaned = drop_orphans(text, backed)
    grounding = assess(cited, context, embedder, support_threshold, cache)
    unstated = unstated_kinds(query or question, cited_blocks(cited, context))
    return Verification(
        cited,
        grounding,
        [*invented, *uncited, *stitched, *unbacked, *orphaned],
        [*empty, *restating],
        added,
        unstated,
    )


def cited_hits(text: str, context: list[Hit]) -> list[Hit]:
    """The context blocks ``text`` cites, in citation order."""
    numbers = dict.fromkeys(n for s in split_answer(text) for n in s.numbers)
    return [context[n - 1] for n in numbers if 1 <= n <= len(context)]


def cited_blocks(text: str, context: list[Hit]) -> list[str]:
    """The heading and text of each context block ``text`` cites (in citation order)."""
    return [
        "\n".join((hit.chunk.title, hit.chunk.section, hit.chunk.text))
        for hit in cited_hits(text, context)
    ]
