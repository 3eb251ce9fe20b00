"""Plain text (``.txt``) to normalised Markdown: paragraphs separated by a blank line."""

from __future__ import annotations

import re


def text_to_markdown(src: str) -> str:
    """Plain text as Markdown paragraphs; characters that Markdown would read as headings or
    fences at the start of a line are escaped so the chunker sees no false structure."""
    lines = []
    for line in src.split("\n"):
        if re.match(r"^\s{0,3}(#{1,6}\s|```|~~~)", line):
            line = "\\" + line.lstrip()
        lines.append(line)
    return re.sub(r"\n\s*\n+", "\n\n", "\n".join(lines))
