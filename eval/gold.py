"""The gold set: one :class:`GoldItem` per JSONL line, loading with line-numbered errors,
split selection and a content hash for run records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rag.errors import InvalidInputError

PAGE_SOURCE = "corpus/machine-learning.txt"
PAGE_TOPIC = "machine-learning"
Kind = Literal["paraphrase", "keyword", "multi", "unanswerable"]
Split = Literal["dev", "test"]
SPLITS: tuple[str, ...] = ("dev", "test", "all")
# Lives beside the gold set but holds judge labels, so `--gold eval/gold/*.jsonl` skips it.
JUDGE_LABELS_NAME = "judge_labels.jsonl"


class GoldItem(BaseModel):
    """One gold question with its reference answer and verbatim evidence quotes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., min_length=1)
    question: str = Field(..., min_length=1)
    answer: str = ""
    evidence: list[str] = Field(default_factory=list)
    answerable: bool
    source: str | list[str] = ""
    topic: str = ""
    kind: Kind
    split: Split

    @field_validator("evidence")
    @classmethod
    def _strings_only(cls, value: list[str]) -> list[str]:
        return [str(v) for v in value]

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
        """Report group: ``page``, ``linked``, ``multi`` or ``unanswerable``."""
        if not self.answerable:
            return "unanswerable"
        if self.kind == "multi":
            return "multi"
        return "page" if self.on_page else "linked"


def parse_gold_lines(lines: Iterable[str], origin: str = "<gold>") -> list[GoldItem]:
    """Parse JSONL lines into items; raises InvalidInputError naming ``origin`` and the line
    of the first malformed entry. Blank lines are skipped."""
    items: list[GoldItem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(GoldItem.model_validate(json.loads(line)))
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
