"""The texts of a gold item's ``source`` as the index sees them, for ``mlrag eval check``:
a project file or a URL in the mirror, loaded once through the same loaders the ingest uses
(``loaded``), and the file's raw text (``raw``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ingest.cleaning import decode_text
from rag.config import PROJECT_ROOT
from rag.errors import MlragError


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
