"""What kind of fact a question asks for, and whether the passages an answer cites state it.

A near-miss question names things the corpus discusses but asks for a fact it does not state.
The commonest kind asks for a *default*: "what's the default batch size of a DataLoader?" over
a tutorial that sets ``batch_size = 64``, or "how many trees does a RandomForestClassifier build
by default?" over an example that passes ``n_estimators``. The 1.5B model answers "64 [1]" from
the example, and every other check passes: the number is in the cited passage, beside the words
of the question. What the passage does not do is say that 64 is a default. Likewise "which
version added X?" answered with a version number the page mentions for something else.

So a question that asks for one of these kinds of fact is answered only from cited passages
that state that kind of fact: a default ("by default", "defaults to", a signature such as
``def __init__(self, patience=10)``), or when something was added ("added in", "new in",
"introduced", "since"). The check is lexical and only ever removes answers; rag.abstention
turns an answer whose cited passages state none of what was asked into an abstention.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AskedKind:
    """A kind of fact a question can ask for: how questions ask for it, and how a passage
    states it."""

    name: str
    asks: re.Pattern[str]
    states: re.Pattern[str]
    # How an answer sentence claims this kind of fact (None: not checked in answers).
    claims: re.Pattern[str] | None = None


ASKED_KINDS: tuple[AskedKind, ...] = (
    AskedKind(
        "default",
        re.compile(r"\bdefault(s|ed)?\b", re.I),
        # "by default", "defaults to", "the default …", "(default)"; or a signature or
        # constructor written with a default value: def f(x, patience=10)
        re.compile(r"\bdefault|\bdef\s+\w+\s*\([^)]*\w\s*=", re.I),
        re.compile(r"\bby default\b|\bdefaults?\s+(to|is|are)\b|\bdefault value\b", re.I),
    ),
    AskedKind(
        "version added",
        re.compile(
            r"\b(which|what)\s+(\w+\s+){0,3}(version|release)\b[^?]*"
            r"\b(add|introduc|new|first|start|support|ship)\w*"
            r"|\b(since|from)\s+(which|what)\s+(version|release)\b"
            r"|\bwhen\s+(was|were|did)\b[^?]*\b(added|introduced|released)\b",
            re.I,
        ),
        re.compile(
            r"\b(added|introduced|new in|since|versionadded|versionchanged|changed in|"
            r"released|deprecated)\b",
            re.I,
        ),
    ),
)


def asked_kinds(question: str) -> list[AskedKind]:
    """The kinds of fact ``question`` asks for (usually none)."""
    return [kind for kind in ASKED_KINDS if kind.asks.search(question)]


def unstated_kinds(question: str, cited_passages: Sequence[str]) -> list[str]:
    """The names of the kinds of fact ``question`` asks for that none of ``cited_passages``
    states ([] when it asks for none, or when an answer cites nothing: other checks decide
    about those)."""
    if not cited_passages:
        return []
    return [
        kind.name
        for kind in asked_kinds(question)
        if not any(kind.states.search(passage) for passage in cited_passages)
    ]


def unbacked_claims(sentence: str, cited_passages: Sequence[str]) -> list[str]:
    """The names of the kinds of fact ``sentence`` claims ("shuffles the data by default")
    that none of ``cited_passages`` states: the 1.5B model answered "pytorch dataloader
    shuffle how" with "The DataLoader shuffles the data by default [1]", citing a line that
    says nothing of a default (and the default is not to shuffle)."""
    return [
        kind.name
        for kind in ASKED_KINDS
        if kind.claims is not None
        and kind.claims.search(sentence)
        and not any(kind.states.search(passage) for passage in cited_passages)
    ]


# "the page", "the page's", "on this page": the user's own page, not the docs it links to.
_ABOUT_THE_PAGE = re.compile(r"\b(the|this|that|your|my|ur) page\b|\bpage'?s\b", re.I)


def asks_about_page(question: str) -> bool:
    """Whether ``question`` asks what the user's own page says ("what batch size does the
    page's CNN use?"): then a passage from another page does not answer it, however close."""
    return bool(_ABOUT_THE_PAGE.search(question))
