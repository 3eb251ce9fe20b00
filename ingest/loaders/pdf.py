"""PDF documents to normalised Markdown with pypdf: a title heading, then paragraphs."""

from __future__ import annotations

import io
import re

from rag.errors import SourceError


def pdf_to_markdown(data: bytes, title: str | None) -> tuple[str, str | None]:
    """Extract a PDF's text as Markdown paragraphs under one ``#`` title heading; returns the
    text and the title found in the PDF's metadata (if any)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")
        meta_title = None
        if reader.metadata is not None and reader.metadata.title:
            meta_title = str(reader.metadata.title).strip() or None
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise SourceError(f"unreadable PDF: {exc}") from exc
    paragraphs = [p for page in pages for p in _paragraphs(page)]
    if not paragraphs:
        raise SourceError("PDF has no extractable text (scanned images need OCR)")
    heading = title or meta_title
    body = "\n\n".join(paragraphs)
    return (f"# {heading}\n\n{body}" if heading else body), meta_title


def _paragraphs(page: str) -> list[str]:
    """Join a page's hard-wrapped lines into paragraphs: a blank line, or a short line that
    ends a sentence, closes a paragraph; a hyphen at a line end joins the word."""
    lines = [ln.strip() for ln in page.replace("\r", "\n").split("\n")]
    width = max((len(ln) for ln in lines), default=0)
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if not line:
            if current:
                paragraphs.append(current)
            current = ""
            continue
        if current.endswith("-") and re.match(r"[a-z]", line):
            current = current[:-1] + line
        else:
            current = f"{current} {line}".strip()
        if line[-1] in ".!?:" and len(line) < 0.7 * width:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return [re.sub(r"\s+", " ", p) for p in paragraphs if p.strip()]
