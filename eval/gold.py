"""The gold set: one :class:`GoldItem` per JSONL line, loading with line-numbered errors,
split selection and a content hash for run records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rag.errors import InvalidInputError

PAGE_SOURCE = "corpus/machine-learning.txt"
PAGE_TOPIC = "machine-learning"
Kind = Literal[
    "paraphrase", "keyword", "multi", "typed", "followup", "unanswerable", "nearmiss", "question"
]  # fmt: skip
# Kinds whose items have no answer in the corpus (``answerable`` defaults to false for them).
UNANSWERABLE_KINDS: frozenset[str] = frozenset({"unanswerable", "nearmiss"})
Split = Literal["dev", "test"]
SPLITS: tuple[str, ...] = ("dev", "test", "all")
DEFAULT_SPLIT = "test"  # a user's own file is for reporting, not tuning
# Report groups, in report order: answerable groups, then unanswerable, then unlabelled.
GROUPS: tuple[str, ...] = (
    "page", "linked", "multi", "typed", "followup", "unanswerable", "nearmiss", "unlabelled"
)  # fmt: skip
# Lives beside the gold set but holds judge labels, so `--gold eval/gold/*.jsonl` skips it.
JUDGE_LABELS_NAME = "judge_labels.jsonl"


class GoldTurn(BaseModel):
    """One earlier message of a follow-up item's conversation (the shape of rag.types.Turn)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(..., min_length=1)


class GoldItem(BaseModel):
    """One gold question with its reference answer and verbatim evidence quotes.

    Only ``question`` is required (defaults in eval/gold/README.md): ``answerable`` is true when
    evidence or an answer is given, false for the unanswerable kinds or an explicit
    ``"answer": null``, else None (an *unlabelled* item, scored only on what needs no
    reference); ``kind`` follows from the history and ``answerable``; ``split`` is "test"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., min_length=1)
    question: str = Field(..., min_length=1)
    answer: str | None = None
    evidence: list[str] = Field(default_factory=list)
    answerable: bool | None = None
    source: str | list[str] = ""
    topic: str = ""
    kind: Kind = "question"
    split: Split = DEFAULT_SPLIT
    history: list[GoldTurn] = Field(default_factory=list)

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

    @field_validator("evidence")
    @classmethod
    def _strings_only(cls, value: list[str]) -> list[str]:
        return [str(v) for v in value]

    @property
    def labelled(self) -> bool:
        """Whether the item says if it is answerable (reference metrics need that)."""
        return self.answerable is not None

    @property
    def reference(self) -> str:
        """The reference answer ("" when none is given)."""
        return self.answer or ""

    def turns(self) -> list[Any]:
        """The history as rag.types.Turn objects (what the pipeline accepts)."""
        from rag.types import Turn

        return [Turn(role=t.role, content=t.content) for t in self.history]

    @property
    def sources(self) -> list[str]:
        """The item's sources as a list (empty for unanswerable items)."""
        if isinstance(self.source, str):
            return [self.source] if self.source else []
        return [s for s in self.source if s]

    @property
    def on_page(self) -> bool:
        """Whether any evidence comes from the user's own page."""
        return PAGE_SOURCE in self.sources or self.topic == PAGE_TOPIC

    @property
    def group(self) -> str:
        """Report group (one of :data:`GROUPS`): ``unlabelled`` without a label; the kind for
        ``nearmiss``, ``typed``, ``followup`` and ``multi``; else ``unanswerable``, or ``page`` /
        ``linked`` by source."""
        if self.answerable is None:
            return "unlabelled"
        if not self.answerable:
            return "nearmiss" if self.kind == "nearmiss" else "unanswerable"
        if self.kind in ("multi", "typed", "followup"):
            return self.kind
        return "page" if self.on_page else "linked"


def default_id(origin: str, number: int) -> str:
    """The id of an item that has none: the file's stem and its line number."""
    return f"{Path(origin).stem or 'gold'}-L{number}"


def parse_item(data: Any, origin: str = "<gold>", number: int = 0) -> GoldItem:
    """One item from its decoded JSON; a missing id becomes :func:`default_id`."""
    if isinstance(data, dict) and not data.get("id"):
        data = {**data, "id": default_id(origin, number)}
    return GoldItem.model_validate(data)


def parse_gold_lines(lines: Iterable[str], origin: str = "<gold>") -> list[GoldItem]:
    """Parse JSONL lines into items; raises InvalidInputError naming ``origin`` and the line
    of the first malformed entry. Blank lines are skipped."""
    items: list[GoldItem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(parse_item(json.loads(line), origin, number))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{origin}:{number}: not valid JSON: {exc.msg}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "item"
            raise InvalidInputError(f"{origin}:{number}: {where}: {first['msg']}") from exc
    return items


def gold_files(paths: Sequence[Path]) -> list[Path]:
    """The given paths without the judge-labels file (a shell glob over eval/gold/ matches it)."""
    return [Path(p) for p in paths if Path(p).name != JUDGE_LABELS_NAME]


def load_gold(paths: Sequence[Path]) -> list[GoldItem]:
    """Every item of the given JSONL files, in file order (the judge-labels file is skipped)."""
    paths = gold_files(paths)
    if not paths:
        raise InvalidInputError("no gold file given")
    items: list[GoldItem] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read gold file {path}: {exc}") from exc
        items.extend(parse_gold_lines(text.splitlines(), str(path)))
    return items


def select_split(items: Sequence[GoldItem], split: str) -> list[GoldItem]:
    """The items of ``split`` (``dev``, ``test`` or ``all``)."""
    if split not in SPLITS:
        raise InvalidInputError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return [i for i in items if split == "all" or i.split == split]


def gold_hash(paths: Sequence[Path]) -> str:
    """sha256 of the gold files' bytes (in the order given), for the run record."""
    digest = hashlib.sha256()
    for path in gold_files(paths):
        digest.update(Path(path).read_bytes())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
