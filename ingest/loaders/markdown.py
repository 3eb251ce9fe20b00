"""Markdown family (``.md``, ``.mdx``, ``.markdown``) to normalised Markdown.

Removes what only a site generator understands: front matter, MDX/JSX components and
imports, HTML comments and tags, Hugo/Liquid/GitBook shortcodes, Doxygen commands (OpenCV),
heading anchors; keeps headings, lists, tables (as pipe rows) and fenced code."""

from __future__ import annotations

import re

from ingest.cleaning import (
    FENCE_RE,
    html_fragment_to_text,
    iter_fence_state,
    pipe_row,
    split_fenced,
    strip_html_comments,
    unescape_entities,
)

_FRONT_MATTER_RE = re.compile(r"\A(?:---|\+\+\+)[ \t]*\n(.*?)\n(?:---|\+\+\+)[ \t]*(?:\n|\Z)", re.S)
_FM_TITLE_RE = re.compile(r"""^title\s*[:=]\s*["']?(.+?)["']?\s*$""", re.M)
_SETEXT_RE = re.compile(r"^(=+|-+)\s*$")
_HR_RE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_HEADING_ATTR_RE = re.compile(r"\s*\{\s*(#[\w:.-]+|id=\"[^\"]*\"|[^}]*=[^}]*)\s*\}\s*$")
_IMPORT_RE = re.compile(
    r"^\s*(import\s+.+\s+from\s+['\"].+['\"];?|import\s+['\"].+['\"];?|export\s+(default|const|function|let|\{).*)\s*$"
)
# A JSX/HTML tag; attributes may hold quoted strings or (nested) JSX braces containing '>'.
_ATTRS = r"""(?:[^<>{}"']|"[^"]*"|'[^']*'|\{(?:[^{}]|\{[^{}]*\})*\})*"""
_TAG_RE = re.compile(rf"</?[A-Za-z][\w.:-]*{_ATTRS}/?>", re.S)
_DROP_ELEMENTS_RE = re.compile(
    r"<(iframe|script|style|svg|video|audio)\b.*?(</\1\s*>|/>)", re.S | re.IGNORECASE
)
_HTML_TABLE_RE = re.compile(r"<table\b.*?</table\s*>", re.S | re.IGNORECASE)
_SHORTCODE_RE = re.compile(r"\{\{[<%].*?[>%]\}\}|\{%-?.*?-?%\}|\{\{\s*[\w.]+\s*\}\}", re.S)
_MDX_COMMENT_RE = re.compile(r"\{/\*.*?\*/\}", re.S)
_JSX_STRING_RE = re.compile(r"""\{\s*(['"`])(.*?)\1\s*\}""")
_IMAGE_RE = re.compile(r"!\[[^\]]*\]\([^)]*\)|!\[[^\]]*\]\[[^\]]*\]")
_LINK_RE = re.compile(r"\[([^\]]+)\]\((?:[^()\s]|\([^)]*\))*(?:\s+\"[^\"]*\")?\)")
_REF_LINK_RE = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_LINK_DEF_RE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+.*$", re.M)
_INLINE_CODE_RE = re.compile(r"(`+)((?:(?!\n\s*\n).)+?)\1", re.S)
_DOXYGEN_SUBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"@ref\s+[\w:]+\s+\"([^\"]+)\""), r"\1"),
    (re.compile(r"@ref\s+([\w:]+)"), r"\1"),
    (re.compile(r"^@(sa|see)\b\s*", re.M), "See also: "),
    (re.compile(r"^@note\b\s*", re.M), "Note: "),
    (re.compile(r"^@warning\b\s*", re.M), "Warning: "),
    (re.compile(r"^@(brief|details)\b\s*", re.M), ""),
    (re.compile(r"@f\$(.*?)@f\$", re.S), r"$\1$"),
    (re.compile(r"@f\[(.*?)@f\]", re.S), r"$$\1$$"),
    (re.compile(r"\\f\$(.*?)\\f\$", re.S), r"$\1$"),
    (re.compile(r"\\f\[(.*?)\\f\]", re.S), r"$$\1$$"),
    (re.compile(r"@(cite|anchor|snippet|include|add_toggle_\w+|end_toggle)\b.*$", re.M), ""),
)
_DOXYGEN_LANGS = {"py": "python", "cpp": "cpp", "java": "java", "sh": "bash", "js": "javascript"}


def markdown_to_markdown(src: str) -> str:
    """Convert site-generator Markdown (GitHub, MDX, Hugo, GitBook, Doxygen) to normalised
    Markdown."""
    text, fm_title = _strip_front_matter(src)
    text = _doxygen_code_to_fences(text)
    text = _mkdocs_admonitions(text)
    text = _unquote(text)
    text = _normalise_fences(text)
    text = "\n".join(seg if is_code else _clean_prose(seg) for is_code, seg in split_fenced(text))
    if fm_title and not _has_h1(text):
        text = f"# {fm_title}\n\n{text}"
    return text


def _has_h1(text: str) -> bool:
    return any(
        not inside and re.match(r"^# \S", line)
        for line, inside in iter_fence_state(text.split("\n"))
    )


def _mkdocs_admonitions(text: str) -> str:
    """``!!! note "Title"`` plus an indented body becomes ``Note: Title`` and the dedented body
    (mkdocs/Python-Markdown admonitions, ``???`` collapsible ones too)."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = re.match(r'^(\s*)(?:!!!|\?\?\?\+?)\s+([\w-]+)(?:\s+"([^"]*)")?\s*$', lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        base = len(match.group(1))
        label = match.group(2).replace("-", " ").capitalize()
        out.extend(["", f"{label}: {match.group(3)}" if match.group(3) else f"{label}:"])
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base
        ):
            out.append(lines[i][base + 4 :] if lines[i].strip() else "")
            i += 1
    return "\n".join(out)


def _strip_front_matter(text: str) -> tuple[str, str | None]:
    match = _FRONT_MATTER_RE.match(text.lstrip("\n"))
    if not match:
        return text, None
    title = _FM_TITLE_RE.search(match.group(1))
    return text.lstrip("\n")[match.end() :], (title.group(1).strip() if title else None)


def _doxygen_code_to_fences(text: str) -> str:
    def repl(match: re.Match[str]) -> str:
        lang = _DOXYGEN_LANGS.get(match.group(1) or "", match.group(1) or "")
        return f"```{lang}"

    text = re.sub(r"^[ \t]*@code(?:\{\.?(\w+)\})?[ \t]*$", repl, text, flags=re.M)
    return re.sub(r"^[ \t]*@endcode[ \t]*$", "```", text, flags=re.M)


def _unquote(text: str) -> str:
    """Drop blockquote markers (asides, GitHub alerts); code fenced inside quotes survives."""
    out: list[str] = []
    open_fence: str | None = None
    for line in text.split("\n"):
        quoted = re.match(r"^\s{0,3}>", line) is not None
        stripped = re.sub(r"^\s{0,3}>(?:\s?>)*\s?", "", line) if quoted else line
        if quoted and open_fence is None:
            # a heading inside an aside is a label, not a section of the document
            heading = re.match(r"^#{1,6}\s+(.*?)\s*#*$", stripped)
            if heading:
                stripped = f"**{_heading_text(heading.group(1))}**"
        match = FENCE_RE.match(stripped)
        if match:
            if open_fence is None:
                open_fence = match.group("fence")
            elif match.group("fence")[0] == open_fence[0] and not match.group("info").strip():
                open_fence = None
        out.append(stripped)
    return "\n".join(out)


def _normalise_fences(text: str) -> str:
    """Fences start at column 0 with backticks and a bare language; code inside an indented
    fence (a list item) is dedented by the fence's indent."""
    out: list[str] = []
    indent = 0
    inside = False
    for line, in_code in iter_fence_state(text.split("\n")):
        stripped = line.lstrip(" ")
        match = FENCE_RE.match(stripped) if in_code else None
        if in_code and not inside and match:
            inside = True
            indent = len(line) - len(stripped)
            info = match.group("info").strip()
            lang = re.split(r"[\s{,]", info, maxsplit=1)[0] if info else ""
            ticks = "`" * max(3, len(match.group("fence")))
            out.append(f"{ticks}{lang.lstrip('.')}")
            continue
        if inside and match and not match.group("info").strip():
            out.append("`" * max(3, len(match.group("fence"))))
            inside = False
            continue
        if inside:
            out.append(line[indent:] if line[:indent].strip() == "" else line)
        else:
            out.append(line)
    return "\n".join(out)


def _protect_code_spans(text: str) -> tuple[str, list[str]]:
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return f"\x00{len(spans) - 1}\x00"

    return _INLINE_CODE_RE.sub(keep, text), spans


def _restore_code_spans(text: str, spans: list[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], text)


def _clean_prose(text: str) -> str:
    text, spans = _protect_code_spans(text)
    text = strip_html_comments(text)
    text = _MDX_COMMENT_RE.sub("", text)
    text = _SHORTCODE_RE.sub("", text)
    for pattern, repl in _DOXYGEN_SUBS:
        text = pattern.sub(repl, text)
    text = _DROP_ELEMENTS_RE.sub("", text)
    text = _HTML_TABLE_RE.sub(lambda m: "\n\n" + html_fragment_to_text(m.group(0)) + "\n\n", text)
    text = "\n".join(line for line in text.split("\n") if not _IMPORT_RE.match(line))
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.I)
    text = _JSX_STRING_RE.sub(r"\2", text)
    text = _TAG_RE.sub("", text)
    text = _IMAGE_RE.sub("", text)
    text = _LINK_RE.sub(r"\1", text)
    text = _REF_LINK_RE.sub(r"\1", text)
    text = _LINK_DEF_RE.sub("", text)
    text = unescape_entities(text)
    lines = _convert_blocks(text.split("\n"))
    return _restore_code_spans("\n".join(lines), spans)


def _convert_blocks(lines: list[str]) -> list[str]:
    """Line-level rewrites: setext and decorated headings, tables, bullets, doc-builder noise."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        nxt = lines[i + 1].rstrip() if i + 1 < len(lines) else ""
        stripped = line.strip()
        if re.fullmatch(r"\[\[[\w-]+\]\].*|\[!\w+\]", stripped):  # [[autodoc]] x, > [!TIP]
            i += 1
            continue
        if (
            stripped
            and _SETEXT_RE.match(nxt)
            and not line.startswith((" ", "\t", "-", "*", "|", "#"))
            and (not out or not out[-1].strip())
        ):
            level = 1 if nxt.lstrip().startswith("=") else 2
            out.extend([f"{'#' * level} {_heading_text(stripped)}", ""])
            i += 2
            continue
        heading = re.match(r"^\s{0,3}(#{1,6})\s+(.*)$", line)
        if heading:
            text = _heading_text(heading.group(2))
            if text:
                out.append(f"{heading.group(1)} {text}")
            i += 1
            continue
        if "|" in line and _TABLE_SEP_RE.match(nxt) and "-" in nxt:
            out.append(pipe_row(_split_table_row(line)))
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                out.append(pipe_row(_split_table_row(lines[i])))
                i += 1
            continue
        if _HR_RE.match(line):
            i += 1
            continue
        bullet = re.match(r"^(\s*)[*+-]\s+(.*)$", line)
        if bullet:
            out.append(f"{bullet.group(1)}- {bullet.group(2)}")
            i += 1
            continue
        out.append(line)
        i += 1
    return out


def _heading_text(text: str) -> str:
    text = _HEADING_ATTR_RE.sub("", text.strip())
    text = re.sub(r"\s#+\s*$", "", text)
    return text.strip()


def _split_table_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = re.split(r"(?<!\\)\|", line)
    return [c.replace("\\|", "|").strip() for c in cells]
