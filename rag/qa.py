"""Grounded Q&A items and evidence matching: the one schema and the one quote matcher.

The eval's gold set, fine-tuning's training items and ingest's loader checks all use these:

* :class:`QAItem` — a question with its reference answer and verbatim evidence quotes (only
  ``question`` is required; see the defaults on the class), read from JSON Lines with
  line-numbered errors by :func:`parse_jsonl`;
* :func:`normalize_for_match` / :func:`contains_quote` — whether a text contains a quote
  once both are normalised (NFKC, lower case, markup characters dropped, whitespace
  collapsed), so evidence labels survive any change of chunking or markup.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rag.errors import InvalidInputError
from rag.types import Turn

# Kinds whose items have no answer in the corpus (``answerable`` defaults to false for them).
UNANSWERABLE_KINDS: frozenset[str] = frozenset({"unanswerable", "nearmiss"})
_MATCH_MARKUP = re.compile(r"[*_`#>|\[\](){}]")


# --- evidence matching ------------------------------------------------------------------------
def normalize_for_match(text: str) -> str:
    """Normalise text for substring matching of evidence quotes against chunks: NFKC,
    lowercase, markup characters removed, all whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _MATCH_MARKUP.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=65536)
def normalized(text: str) -> str:
    """:func:`normalize_for_match`, cached (chunk texts repeat across questions)."""
    return normalize_for_match(text)


def contains_quote(text: str, quote: str) -> bool:
    """Whether ``quote`` occurs in ``text`` after normalising both (an empty quote never
    matches: it would make every chunk relevant)."""
    needle = normalized(quote)
    return bool(needle) and needle in normalized(text)


# --- the item schema --------------------------------------------------------------------------
class QATurn(BaseModel):
    """One earlier message of a follow-up item's conversation (the shape of rag.types.Turn)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(..., min_length=1)


class QAItem(BaseModel):
    """One grounded question with its reference answer and verbatim evidence quotes.

    Only ``question`` is required: ``answerable`` is true when evidence or an answer is given,
    false for the unanswerable kinds or an explicit ``"answer": null``, else None (an
    *unlabelled* item, scored only on what needs no reference); ``kind`` follows from the
    history and ``answerable`` when not given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., min_length=1)
    question: str = Field(..., min_length=1)
    answer: str | None = None
    evidence: list[str] = Field(default_factory=list)
    answerable: bool | None = None
    source: str | list[str] = ""
    topic: str = ""
    kind: str = "question"
    split: str = ""
    history: list[QATurn] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Fill ``answerable`` and ``kind`` from what the item gives (see the class docstring)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.get("kind")
        if data.get("answerable") is None:
            if kind in UNANSWERABLE_KINDS or ("answer" in data and data["answer"] is None):
                data["answerable"] = False
            elif data.get("evidence") or data.get("answer"):
                data["answerable"] = True
        if kind is None:
            if data.get("history"):
                data["kind"] = "followup"
            elif data.get("answerable") is False:
                data["kind"] = "unanswerable"
            else:
                data["kind"] = "question"
        return data

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("evidence")
    @classmethod
    def _quotes(cls, value: list[str]) -> list[str]:
        if any(not str(q).strip() for q in value):
            raise ValueError("evidence quotes must not be blank")
        return [str(q) for q in value]

    @property
    def labelled(self) -> bool:
        """Whether the item says if it is answerable (reference metrics need that)."""
        return self.answerable is not None

    @property
    def reference(self) -> str:
        """The reference answer ("" when none is given)."""
        return self.answer or ""

    @property
    def sources(self) -> list[str]:
        """The item's sources as a list (empty for unanswerable items)."""
        if isinstance(self.source, str):
            return [self.source] if self.source else []
        return [s for s in self.source if s]

    def turns(self) -> list[Turn]:
        """The history as rag.types.Turn objects (what the pipeline accepts)."""
        return [Turn(role=t.role, content=t.content) for t in self.history]


M = TypeVar("M", bound=BaseModel)


def parse_jsonl(
    lines: Iterable[str],
    model: type[M],
    origin: str = "<data>",
    prepare: Callable[[Any, int], Any] | None = None,
) -> Iterator[tuple[int, M]]:
    """``(line number, item)`` for each non-blank JSON line validated as ``model``;
    InvalidInputError naming ``origin`` and the line of the first malformed entry.
    ``prepare(data, line_number)`` may fill defaults before validation."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if prepare is not None:
                data = prepare(data, number)
            yield number, model.model_validate(data)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{origin}:{number}: not valid JSON: {exc.msg}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "item"
            raise InvalidInputError(f"{origin}:{number}: {where}: {first['msg']}") from exc
