"""``mlrag eval check``: prove a gold file is sound before any number is computed from it.

Every evidence quote must occur in its source after :func:`rag.qa.normalize_for_match`
— first in the text the ingest loaders produce (what the index sees), else in the raw file
(reported as a warning: retrieval can never find a quote the loaders drop). Also flagged:
malformed lines, duplicate ids, duplicate and near-duplicate questions, answerable items
without evidence or source, unanswerable items with evidence, multi items with fewer than two
quotes, and sources that are neither a project file nor a URL in the mirror.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from eval.gold import GoldItem, gold_files, parse_item
from eval.relevance import contains_quote, normalize
from rag.config import PROJECT_ROOT
from rag.qa import UNANSWERABLE_KINDS

if TYPE_CHECKING:
    from rag.config import Settings

NEAR_DUPLICATE_RATIO = 0.9  # difflib ratio of normalised questions
NEAR_DUPLICATE_JACCARD = 0.85  # word-set overlap of questions with ≥ 4 words


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a gold file (``severity`` "error" fails the check)."""

    file: str
    line: int
    item_id: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        label = f" {self.item_id}:" if self.item_id else ""
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}:{label} {prefix}{self.message}"


class SourceLookup(Protocol):
    """Where the check reads a gold ``source``'s texts (ingest.source_texts.SourceResolver
    in practice: the text the ingest loaders produce and the raw file)."""

    def get(self, source: str) -> SourceTexts:
        """The texts of ``source``; raises LookupError with a one-line reason when unknown."""
        ...


class SourceTexts(Protocol):
    """A source's text as the index sees it (``loaded``) and as stored on disk (``raw``)."""

    @property
    def loaded(self) -> str: ...

    @property
    def raw(self) -> str: ...


def default_mirror(settings: Settings) -> Path | None:
    """``settings.mirror``, else the shared mirror beside the project when it exists."""
    if settings.mirror is not None:
        return settings.mirror
    shared = PROJECT_ROOT.parent / "shared" / "corpus" / "linked"
    return shared if (shared / "MANIFEST.json").is_file() else None


def _words(question: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", normalize(question)))


def question_key(question: str) -> str:
    """A question's words only: equal keys mean duplicate questions (case, punctuation and
    spacing aside)."""
    return " ".join(re.findall(r"[a-z0-9]+", normalize(question)))


def _near_duplicate(a: str, b: str) -> bool:
    na, nb = normalize(a), normalize(b)
    if SequenceMatcher(None, na, nb).ratio() >= NEAR_DUPLICATE_RATIO:
        return True
    wa, wb = _words(a), _words(b)
    if min(len(wa), len(wb)) < 4:
        return False
    return len(wa & wb) / len(wa | wb) >= NEAR_DUPLICATE_JACCARD


def _item_problems(item: GoldItem, file: str, line: int, resolver: SourceLookup) -> list[Problem]:
    problems: list[Problem] = []

    def add(message: str, severity: str = "error") -> None:
        problems.append(Problem(file, line, item.id, message, severity))

    if item.answerable is None:
        pass  # unlabelled: scored only on what needs no reference, nothing to verify
    elif item.answerable:
        if not item.evidence:
            add("answerable item without evidence")
        if not item.sources:
            add("answerable item without a source")
        if item.kind in UNANSWERABLE_KINDS:
            add(f"kind {item.kind!r} but answerable is true")
    else:
        if item.evidence:
            add(f"unanswerable item with {len(item.evidence)} evidence quote(s)")
        if item.kind not in UNANSWERABLE_KINDS:
            add(f"answerable is false but kind is {item.kind!r}")
    if item.kind == "followup" and not item.history:
        add("followup item without history")
    if item.kind == "multi" and len(item.evidence) < 2:
        add("multi item needs at least two evidence quotes")
    texts: list[SourceTexts] = []
    for source in item.sources:
        try:
            texts.append(resolver.get(source))
        except LookupError as exc:
            add(str(exc))
    if not texts:
        return problems
    for number, quote in enumerate(item.evidence, start=1):
        if not normalize(quote):
            add(f"evidence #{number} is empty after normalisation")
        elif any(contains_quote(t.loaded, quote) for t in texts):
            continue
        elif any(contains_quote(t.raw, quote) for t in texts):
            add(
                f"evidence #{number} occurs only in the raw file, not in the loaded text the "
                f"index sees: {quote[:80]!r}",
                severity="warning",
            )
        else:
            add(f"evidence #{number} not found in {', '.join(item.sources)}: {quote[:80]!r}")
    return problems


def check_gold_files(paths: Sequence[Path], resolver: SourceLookup) -> list[Problem]:
    """Every problem of the given gold files, in file order (duplicates are checked across
    all files together)."""
    problems: list[Problem] = []
    seen_ids: dict[str, str] = {}
    questions: list[tuple[GoldItem, str]] = []
    for path in gold_files(paths):
        file = str(path)
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            problems.append(Problem(file, 0, "", f"cannot read: {exc}"))
            continue
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = parse_item(json.loads(line), file, number)
            except json.JSONDecodeError as exc:
                problems.append(Problem(file, number, "", f"not valid JSON: {exc.msg}"))
                continue
            except ValidationError as exc:
                for error in exc.errors():
                    where = ".".join(str(p) for p in error["loc"]) or "item"
                    problems.append(Problem(file, number, "", f"{where}: {error['msg']}"))
                continue
            here = f"{file}:{number}"
            if item.id in seen_ids:
                problems.append(
                    Problem(file, number, item.id, f"duplicate id (first at {seen_ids[item.id]})")
                )
            else:
                seen_ids[item.id] = here
            for other, other_at in questions:
                if question_key(other.question) == question_key(item.question):
                    problems.append(
                        Problem(
                            file, number, item.id, f"duplicate question of {other.id} ({other_at})"
                        )
                    )
                    break
                if _near_duplicate(other.question, item.question):
                    problems.append(
                        Problem(
                            file,
                            number,
                            item.id,
                            f"near-duplicate question of {other.id} ({other_at}): {item.question!r}",
                        )
                    )
                    break
            questions.append((item, here))
            problems.extend(_item_problems(item, file, number, resolver))
    return problems
