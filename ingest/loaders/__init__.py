"""Document loaders: bytes of any supported format in, a :class:`rag.types.Document` with
normalised Markdown text out (ATX headings, fenced code, pipe-row tables, ``- `` lists)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from ingest.cleaning import decode_text, first_heading, normalize_whitespace
from rag.errors import SourceError
from rag.types import Document

SUPPORTED_FORMATS: frozenset[str] = frozenset(
    {"txt", "md", "mdx", "markdown", "rst", "doctest", "py", "html", "pdf", "webtext"}
)

_EXTENSIONS: dict[str, str] = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".mdx": "mdx",
    ".markdown": "markdown",
    ".rst": "rst",
    ".rest": "rst",
    ".doctest": "doctest",
    ".py": "py",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
}
_CONTENT_TYPES: dict[str, str] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/plain": "txt",
    "application/pdf": "pdf",
    "text/x-rst": "rst",
    "text/prs.fallenstein.rst": "rst",
    "text/x-python": "py",
}


def detect_format(name: str, content_type: str | None = None) -> str:
    """The loader format of a source: by file extension of ``name`` (a path or URL) first,
    else by HTTP ``content_type``; raises :class:`SourceError` when neither is supported."""
    path = unquote(urlparse(name).path) if "://" in name else name
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if content_type:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime in _CONTENT_TYPES:
            return _CONTENT_TYPES[mime]
    raise SourceError(
        f"unsupported format for {name!r} (extension {suffix or 'none'!r}, "
        f"content type {content_type or 'none'!r})"
    )


def load_document(
    data: bytes,
    *,
    fmt: str,
    doc_id: str,
    source: str,
    url: str = "",
    title: str | None = None,
    topic: str = "",
    metadata: dict[str, Any] | None = None,
) -> Document:
    """Load one source's bytes as a cleaned :class:`Document` whose text is normalised
    Markdown. Raises :class:`SourceError` for unsupported formats, empty or binary data,
    undecodable text and PDFs without extractable text."""
    if fmt not in SUPPORTED_FORMATS:
        raise SourceError(f"unsupported format {fmt!r} for {source}")
    if not data.strip():
        raise SourceError(f"empty file: {source}")
    found_title: str | None = None
    if fmt == "pdf":
        from ingest.loaders.pdf import pdf_to_markdown

        text, found_title = pdf_to_markdown(data, title)
    else:
        text, found_title = _convert(decode_text(data), fmt)
    text = normalize_whitespace(text)
    if not text.strip():
        raise SourceError(f"empty file: {source} has no text after cleaning")
    if title:
        doc_title, title_source = title, "given"
    elif heading := first_heading(text):
        doc_title, title_source = _plain_title(heading), "heading"
    elif found_title:
        doc_title, title_source = found_title, "metadata"
    else:
        doc_title, title_source = _stem(source) or doc_id, "filename"
    meta: dict[str, Any] = dict(metadata or {})
    meta["format"] = fmt
    meta["title_source"] = title_source
    if topic:
        meta.setdefault("topic", topic)
    return Document(id=doc_id, source=source, title=doc_title, url=url, text=text, metadata=meta)


def _convert(src: str, fmt: str) -> tuple[str, str | None]:
    if not src.strip():
        return "", None
    if fmt in {"md", "mdx", "markdown"}:
        from ingest.loaders.markdown import markdown_to_markdown

        return markdown_to_markdown(src), None
    if fmt in {"rst", "doctest"}:
        from ingest.loaders.rst import rst_to_markdown

        return rst_to_markdown(src), None
    if fmt == "py":
        from ingest.loaders.sphinx_gallery import sphinx_gallery_to_markdown

        return sphinx_gallery_to_markdown(src), None
    if fmt == "html":
        from ingest.loaders.html import html_to_markdown

        return html_to_markdown(src)
    if fmt == "webtext":
        from ingest.loaders.webtext import webtext_to_markdown

        return webtext_to_markdown(src), None
    from ingest.loaders.text import text_to_markdown

    return text_to_markdown(src), None


def _plain_title(heading: str) -> str:
    """A heading without inline markup, for use as a document title."""
    return re.sub(r"[*_`]+", "", heading).strip()


def _stem(source: str) -> str:
    path = unquote(urlparse(source).path) if "://" in source else source
    return PurePosixPath(path).stem
