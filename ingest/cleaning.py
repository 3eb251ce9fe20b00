"""Text cleaning shared by the loaders: decoding, whitespace and unicode normalisation, markup
noise removal, and the matching normalisation the eval harness uses for evidence quotes."""

from __future__ import annotations

import codecs
import html
import re
import unicodedata
from collections.abc import Iterator

from rag.errors import SourceError
from rag.qa import normalize_for_match  # noqa: F401 - the one quote matcher, for loader checks

# A fence line: up to 3 spaces of indent, then ``` or ~~~ (3 or more), then an info string.
FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_BLOCK_TAGS = {
    "div", "p", "table", "ul", "ol", "li", "pre", "section", "main", "article", "body",
    "header", "footer", "nav", "aside", "blockquote", "dl", "dt", "dd", "figure", "details",
    "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip


def decode_text(data: bytes) -> str:
    """Decode file bytes as Unicode text; binary or undecodable data is a :class:`SourceError`.

    A BOM selects UTF-8/16/32; otherwise the bytes must be valid UTF-8. Nothing is decoded as
    latin-1 on a guess, because silently indexing mojibake is worse than skipping a file.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise SourceError(f"undecodable text: invalid {encoding} ({exc.reason})") from exc
    if b"\x00" in data:
        raise SourceError("binary data: the file contains NUL bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"undecodable text: not valid UTF-8 at byte {exc.start} ({exc.reason})"
        ) from exc


def normalize_unicode(text: str) -> str:
    """NFC-normalise, unify line endings, and drop invisible characters (zero-width, BOM,
    soft hyphen); non-breaking spaces become plain spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE_RE.sub("", text).replace("\u00a0", " ").replace("\u202f", " ")
    return unicodedata.normalize("NFC", text)


def iter_fence_state(lines: list[str]) -> Iterator[tuple[str, bool]]:
    """Yield ``(line, inside)`` where ``inside`` is true for fence lines and code within fences."""
    open_fence: str | None = None
    for line in lines:
        match = FENCE_RE.match(line)
        if open_fence is None:
            if match:
                open_fence = match.group("fence")
                yield line, True
                continue
            yield line, False
        else:
            yield line, True
            if (
                match
                and match.group("fence")[0] == open_fence[0]
                and len(match.group("fence")) >= len(open_fence)
                and not match.group("info").strip()
            ):
                open_fence = None


def split_fenced(text: str) -> list[tuple[bool, str]]:
    """Split Markdown into ``(is_code, text)`` segments; code segments include their fences."""
    segments: list[tuple[bool, list[str]]] = []
    for line, inside in iter_fence_state(text.split("\n")):
        if segments and segments[-1][0] == inside:
            segments[-1][1].append(line)
        else:
            segments.append((inside, [line]))
    # A code segment ends with its closing fence; a following fence starts a new segment.
    out: list[tuple[bool, str]] = []
    for is_code, lines in segments:
        if not is_code:
            out.append((False, "\n".join(lines)))
            continue
        block: list[str] = []
        state: str | None = None
        for line in lines:
            match = FENCE_RE.match(line)
            block.append(line)
            if state is None and match:
                state = match.group("fence")
            elif (
                state
                and match
                and match.group("fence")[0] == state[0]
                and not match.group("info").strip()
            ):
                out.append((True, "\n".join(block)))
                block, state = [], None
        if block:
            out.append((True, "\n".join(block)))
    return out


def map_prose(text: str, func) -> str:  # type: ignore[no-untyped-def]
    """Apply ``func`` to the prose parts of Markdown, leaving fenced code untouched."""
    return "\n".join(seg if is_code else func(seg) for is_code, seg in split_fenced(text))


def fence(code: str, lang: str = "") -> str:
    """A fenced code block; the fence is longer than any backtick run inside the code."""
    code = code.strip("\n")
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=2)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{code}\n{ticks}"


def normalize_whitespace(text: str) -> str:
    """Unicode-normalise, strip trailing spaces, collapse runs of blank lines to one, and trim
    leading/trailing blank lines. Blank lines inside fenced code are kept (at most one)."""
    text = normalize_unicode(text)
    out: list[str] = []
    was_inside = False
    for line, inside in iter_fence_state(text.split("\n")):
        line = line.rstrip()
        if not inside:
            line = line.expandtabs(4) if line.strip() else ""
        # fences stand apart from the prose around them
        if inside and not was_inside and out and out[-1]:
            out.append("")
        if not inside and was_inside and line:
            out.append("")
        was_inside = inside
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out).strip("\n") + "\n" if any(out) else ""


def strip_html_comments(text: str) -> str:
    """Remove ``<!-- ... -->`` comments (possibly spanning lines)."""
    return re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)


def unescape_entities(text: str) -> str:
    """Turn HTML entities (``&amp;``, ``&nbsp;``) into characters."""
    return html.unescape(text)


def pipe_row(cells: list[str]) -> str:
    """One table row in the normalised form ``a | b | c`` (pipes inside cells are escaped)."""
    return " | ".join(re.sub(r"\s+", " ", c.replace("|", "\\|")).strip() for c in cells)


def html_fragment_to_text(fragment: str) -> str:
    """Readable text of an HTML fragment: tables become pipe rows, list items ``- item``,
    block elements separate paragraphs, everything else keeps only its text."""
    import lxml.html

    fragment = fragment.strip()
    if not fragment:
        return ""
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except Exception:  # noqa: BLE001 - lxml raises several types for broken markup
        return re.sub(r"<[^>]+>", " ", fragment)
    for bad in root.xpath(".//script|.//style|.//svg|.//iframe|.//noscript"):
        bad.drop_tree()
    lines: list[str] = []

    def text_of(el) -> str:  # type: ignore[no-untyped-def]
        return re.sub(r"\s+", " ", el.text_content()).strip()

    def walk(el) -> None:  # type: ignore[no-untyped-def]
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag == "table":
            for row in el.xpath(".//tr"):
                cells = [text_of(c) for c in row.xpath("./th|./td")]
                if any(cells):
                    lines.append(pipe_row(cells))
            lines.append("")
            return
        if tag == "li":
            lines.append(f"- {text_of(el)}")
            return
        if tag in {"pre"}:
            lines.extend(["", fence(el.text_content()), ""])
            return
        if re.fullmatch(r"h[1-6]", tag):
            lines.extend(["", f"{'#' * int(tag[1])} {text_of(el)}", ""])
            return
        has_block_child = any(isinstance(c.tag, str) and c.tag in _BLOCK_TAGS for c in el)
        if not has_block_child:
            text = text_of(el)
            if text:
                lines.extend([text, ""])
            return
        if el.text and el.text.strip():
            lines.append(el.text.strip())
        for child in el:
            walk(child)
            if child.tail and child.tail.strip():
                lines.append(child.tail.strip())

    walk(root)
    return "\n".join(lines)


def first_heading(text: str) -> str | None:
    """The text of the first ATX heading outside code fences, if any."""
    for line, inside in iter_fence_state(text.split("\n")):
        if not inside:
            match = HEADING_RE.match(line)
            if match:
                return match.group(2).strip()
    return None
