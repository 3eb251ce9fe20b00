"""``mlrag eval check``: prove a gold file is sound before any number is computed from it.

Every evidence quote must occur in its source after :func:`ingest.cleaning.normalize_for_match`
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
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from eval.gold import UNANSWERABLE_KINDS, GoldItem, gold_files, parse_item
from eval.relevance import contains_quote, normalize
from ingest.cleaning import decode_text
from rag.config import PROJECT_ROOT
from rag.errors import MlragError

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


@dataclass(frozen=True)
class SourceText:
    """A source's text as the index sees it (``loaded``) and as stored on disk (``raw``)."""

    source: str
    loaded: str
    raw: str


@dataclass
class SourceResolver:
    """Maps gold ``source`` values (a project-relative path or a public URL) to their texts,
    loading each once through the same loaders the ingest uses."""

    project_root: Path = PROJECT_ROOT
    mirror: Path | None = None
    sources_file: Path | None = None
    _cache: dict[str, SourceText | str] = field(default_factory=dict)
    _manifest: dict[str, dict] | None = None
    _specs: dict[str, object] | None = None

    def _mirror_entries(self) -> dict[str, dict]:
        if self._manifest is None:
            from ingest.fetch import load_mirror

            self._manifest = load_mirror(self.mirror) if self.mirror is not None else {}
        return self._manifest

    def _spec_by_doc_id(self) -> dict[str, object]:
        """Sources-file specs by doc id, for their declared format and title."""
        if self._specs is None:
            self._specs = {}
            if self.sources_file is not None and self.sources_file.is_file():
                from ingest.sources import doc_id_for, load_sources

                base = self.sources_file.parent
                for spec in load_sources(self.sources_file):
                    self._specs[doc_id_for(spec.location, base)] = spec
        return self._specs

    def get(self, source: str) -> SourceText:
        """The texts of ``source``; raises LookupError with a one-line reason when unknown."""
        cached = self._cache.get(source)
        if cached is None:
            try:
                cached = self._load(source)
            except (LookupError, MlragError, OSError) as exc:
                cached = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._cache[source] = cached
        if isinstance(cached, str):
            raise LookupError(cached)
        return cached

    def _load(self, source: str) -> SourceText:
        from ingest.loaders import detect_format, load_document
        from ingest.sources import doc_id_for, is_url, normalize_url

        if is_url(source):
            entry = self._mirror_entries().get(normalize_url(source))
            if entry is None:
                where = self.mirror or "(no mirror configured)"
                raise LookupError(f"unknown source {source!r}: not in mirror {where}")
            path = Path(self.mirror or ".") / str(entry["path"])
            doc_id = doc_id_for(source)
            title = entry.get("title")
        else:
            path = self.project_root / source
            if not path.is_file():
                raise LookupError(f"unknown source {source!r}: no such file {path}")
            base = self.sources_file.parent if self.sources_file else self.project_root
            doc_id = doc_id_for(str(path.resolve()), base.resolve())
            title = None
        spec = self._spec_by_doc_id().get(doc_id)
        fmt = getattr(spec, "format", None) or detect_format(str(path))
        data = path.read_bytes()
        raw = decode_text(data)
        document = load_document(
            data, fmt=fmt, doc_id=doc_id, source=source, title=getattr(spec, "title", None) or title
        )
        return SourceText(source=source, loaded=document.text, raw=raw)


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


def _item_problems(item: GoldItem, file: str, line: int, resolver: SourceResolver) -> list[Problem]:
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
    texts: list[SourceText] = []
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


def check_gold_files(paths: Sequence[Path], resolver: SourceResolver) -> list[Problem]:
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
