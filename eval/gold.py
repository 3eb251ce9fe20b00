"""The gold set: one :class:`GoldItem` per JSONL line, loading with line-numbered errors,
split selection and a content hash for run records."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from rag.errors import InvalidInputError
from rag.qa import QAItem, parse_jsonl

PAGE_SOURCE = "corpus/machine-learning.txt"
PAGE_TOPIC = "machine-learning"
Kind = Literal[
    "paraphrase", "keyword", "multi", "typed", "followup", "unanswerable", "nearmiss", "question"
]  # fmt: skip
Split = Literal["dev", "test"]
SPLITS: tuple[str, ...] = ("dev", "test", "all")
DEFAULT_SPLIT = "test"  # a user's own file is for reporting, not tuning
# Report groups, in report order: answerable groups, then unanswerable, then unlabelled.
GROUPS: tuple[str, ...] = (
    "page", "linked", "multi", "typed", "followup", "unanswerable", "nearmiss", "unlabelled"
)  # fmt: skip
# Lives beside the gold set but holds judge labels, so `--gold eval/gold/*.jsonl` skips it.
JUDGE_LABELS_NAME = "judge_labels.jsonl"


class GoldItem(QAItem):
    """One gold question (rag.qa's :class:`~rag.qa.QAItem`) with the gold set's kinds and
    splits (``split`` defaults to "test": a user's own file is for reporting, not tuning)."""

    kind: Kind = "question"
    split: Split = DEFAULT_SPLIT

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

    def with_id(data: Any, number: int) -> Any:
        if isinstance(data, dict) and not data.get("id"):
            return {**data, "id": default_id(origin, number)}
        return data

    return [item for _, item in parse_jsonl(lines, GoldItem, origin, with_id)]


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
