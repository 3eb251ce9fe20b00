"""sphinx-gallery Python tutorials (``.py``) to normalised Markdown.

The module docstring and the comment blocks that follow a ``####...`` or ``# %%`` separator
are reST prose; everything else is code, emitted as fenced python blocks in order."""

from __future__ import annotations

import ast
import re

from ingest.cleaning import fence
from ingest.loaders.rst import RstConverter

_SEPARATOR_RE = re.compile(r"^(#{20,}|# %%.*)\s*$")


def sphinx_gallery_to_markdown(src: str) -> str:
    """Convert a sphinx-gallery example script to Markdown: prose from the docstring and
    separator-introduced comment blocks, code as ```python fences."""
    converter = RstConverter()
    lines = src.split("\n")
    parts: list[str] = []
    start = 0
    try:
        module = ast.parse(src)
    except SyntaxError:
        module = None
    if module and module.body:
        first = module.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            parts.append(converter.convert(_drop_navigation(first.value.value)))
            start = first.end_lineno or 0
    code: list[str] = []
    i = start
    while i < len(lines):
        line = lines[i]
        if _SEPARATOR_RE.match(line):
            _flush_code(code, parts)
            j = i + 1
            prose: list[str] = []
            while j < len(lines) and lines[j].startswith("#") and not _SEPARATOR_RE.match(lines[j]):
                prose.append(re.sub(r"^# ?", "", lines[j]))
                j += 1
            text = converter.convert("\n".join(prose))
            if text.strip():
                parts.append(text)
            i = j
            continue
        code.append(line)
        i += 1
    _flush_code(code, parts)
    return "\n\n".join(p for p in parts if p.strip())


def _flush_code(code: list[str], parts: list[str]) -> None:
    body = "\n".join(code).strip("\n")
    if body.strip():
        parts.append(fence(body, "python"))
    code.clear()


def _drop_navigation(doc: str) -> str:
    """Remove the tutorial series' link bar: a paragraph whose lines are chained with ``||``."""
    paragraphs = re.split(r"\n\s*\n", doc)
    kept = [p for p in paragraphs if p.count("||") < max(1, len(p.strip().splitlines()) - 1)]
    return "\n\n".join(kept)
