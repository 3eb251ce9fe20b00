"""reStructuredText (``.rst``, ``.doctest``) to normalised Markdown.

A line-based converter (docutils is not a dependency): headings by adornment style in order of
first appearance, code-block/literal/doctest blocks to fences, admonitions keep their text,
build-only directives are dropped, roles and links become readable text, tables become pipe
rows."""

from __future__ import annotations

import ast
import csv
import io
import re
from dataclasses import dataclass, field

from ingest.cleaning import fence, html_fragment_to_text, pipe_row

_ADORNMENT_RE = re.compile(r"^([=\-~^\"'`#*+:.<>_!$%&,;?@\\/|])\1{2,}\s*$")
_DIRECTIVE_RE = re.compile(r"^\.\.\s+([\w:.-]+)::(?:\s+(.*))?$")
_SIMPLE_BORDER_RE = re.compile(r"^\s*=+(\s+=+)+\s*$")
_GRID_BORDER_RE = re.compile(r"^\s*\+([-=]+\+)+\s*$")
_BULLET_RE = re.compile(r"^([*+\-•‣⁃])(\s+)(.*)$")
_ENUM_RE = re.compile(r"^(\(?(?:\d+|#|[a-zA-Z]|[ivxlcdm]+)[.)])(\s+)(.*)$")
_FIELD_RE = re.compile(r"^:([^:`][^:]*):(?:\s+(.*))?$")
_OPTION_RE = re.compile(r"^:[\w][\w -]*:(\s|$)")

_CODE_DIRECTIVES = {
    "code-block", "code", "sourcecode", "ipython", "testcode", "testsetup", "testoutput",
    "doctest", "jupyter-execute", "code-cell", "prompt", "parsed-literal",
}  # fmt: skip
_DROP_DIRECTIVES = {
    "toctree", "image", "include", "literalinclude", "contents", "index", "sectionauthor",
    "currentmodule", "module", "highlight", "autosummary", "automodule", "autoclass",
    "autofunction", "automethod", "autodata", "autoattribute", "tabularcolumns", "meta",
    "default-role", "role", "testcleanup", "graphviz", "youtube", "moduleauthor",
    "codeauthor", "cssclass", "raw-latex", "title", "sidebar-image", "minigallery",
    "include-source", "program-output", "command-output", "bibliography", "footbibliography",
}  # fmt: skip
_ADMONITION_LABELS = {
    "note": "Note", "warning": "Warning", "tip": "Tip", "important": "Important",
    "hint": "Hint", "caution": "Caution", "attention": "Attention", "danger": "Danger",
    "error": "Error", "seealso": "See also", "todo": "To do",
}  # fmt: skip
_VERSION_LABELS = {
    "versionadded": "New in version", "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version", "versionremoved": "Removed in version",
}  # fmt: skip
_TITLED_CONTAINERS = {
    "admonition", "topic", "sidebar", "rubric", "table", "dropdown", "card", "tab",
    "tab-item", "container", "only", "hlist", "centered", "figure", "compound", "epigraph",
    "highlights", "pull-quote", "grid", "grid-item", "grid-item-card", "tab-set",
}  # fmt: skip
_CODE_ROLES = {
    "func", "meth", "class", "obj", "attr", "mod", "const", "data", "exc", "setting",
    "option", "program", "file", "command", "sig", "signal", "state", "control", "envvar",
    "samp", "kbd", "code", "type", "member", "var", "macro", "event", "confval",
}  # fmt: skip


@dataclass
class _Block:
    kind: str  # "p" paragraph, "h" heading, "code", "li" list item, "table"
    text: str


@dataclass
class RstConverter:
    """Converts reST to Markdown; one instance per document so that heading levels (by
    adornment style, in order of first appearance) stay consistent across its fragments."""

    styles: list[tuple[str, bool]] = field(default_factory=list)
    substitutions: dict[str, str] = field(default_factory=dict)

    def convert(self, text: str) -> str:
        """Convert a reST document (or a fragment of one) to normalised Markdown."""
        lines = text.expandtabs(8).split("\n")
        # Jinja placeholders ({{ header }}) that the docs build substitutes
        lines = [ln for ln in lines if not re.fullmatch(r"\s*\{\{.*\}\}\s*", ln)]
        self._collect_substitutions(lines)
        return _join_blocks(self._blocks([ln.rstrip() for ln in lines]))

    # --- block level ----------------------------------------------------------------------
    def _collect_substitutions(self, lines: list[str]) -> None:
        for line in lines:
            match = re.match(r"^\.\.\s+\|([^|]+)\|\s+replace::\s+(.*)$", line.strip())
            if match:
                self.substitutions[match.group(1)] = match.group(2).strip()

    def _blocks(self, lines: list[str]) -> list[_Block]:
        blocks: list[_Block] = []
        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            indent = _indent(line)
            if indent > 0:
                j = _block_end(lines, i, 1)
                sub = _dedent(lines[i:j])
                if sub and sub[0].lstrip().startswith(">>>"):
                    blocks.append(_Block("code", _doctest_fence(sub)))
                else:
                    blocks.extend(self._blocks(sub))
                i = j
                continue
            consumed = (
                self._heading(lines, i, blocks)
                or self._explicit_markup(lines, i, blocks)
                or self._table(lines, i, blocks)
                or self._list_item(lines, i, blocks)
                or self._doctest(lines, i, blocks)
                or self._line_block(lines, i, blocks)
                or self._paragraph(lines, i, blocks)
            )
            i = consumed
        return blocks

    def _heading(self, lines: list[str], i: int, blocks: list[_Block]) -> int:
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = _ADORNMENT_RE.match(line)
        if over and i + 2 < len(lines):
            third = lines[i + 2]
            under = _ADORNMENT_RE.match(third)
            if under and under.group(1) == over.group(1) and nxt.strip():
                self._emit_heading(nxt.strip(), (over.group(1), True), blocks)
                return i + 3
        if over and (not nxt.strip()) and (i == 0 or not lines[i - 1].strip()):
            return i + 1  # a transition
        under = _ADORNMENT_RE.match(nxt)
        if under and line.strip() and not over and len(nxt.strip()) >= min(3, len(line.strip())):
            self._emit_heading(line.strip(), (under.group(1), False), blocks)
            return i + 2
        return 0

    def _emit_heading(self, title: str, style: tuple[str, bool], blocks: list[_Block]) -> None:
        if style not in self.styles:
            self.styles.append(style)
        level = min(self.styles.index(style) + 1, 6)
        blocks.append(_Block("h", f"{'#' * level} {self.inline(title)}"))

    def _explicit_markup(self, lines: list[str], i: int, blocks: list[_Block]) -> int:
        line = lines[i]
        if not line.startswith(".."):
            return 0
        directive = _DIRECTIVE_RE.match(line)
        if directive or re.match(r"^\.\.\s+\[", line):
            end = _block_end(lines, i + 1, 1)
        else:  # comments and targets own only the indented lines right below them
            end = i + 1
            while end < len(lines) and lines[end].strip() and _indent(lines[end]) > 0:
                end += 1
        body = _dedent(lines[i + 1 : end])
        if directive:
            name = directive.group(1).lower()
            arg = (directive.group(2) or "").strip()
            self._directive(name, arg, body, blocks)
            return end
        footnote = re.match(r"^\.\.\s+\[([^\]]+)\]\s*(.*)$", line)
        if footnote:
            text = " ".join([footnote.group(2), *(b.strip() for b in body)]).strip()
            if text:
                blocks.append(_Block("p", f"[{footnote.group(1).lstrip('#')}] {self.inline(text)}"))
            return end
        return end  # comments, hyperlink targets, substitution definitions

    def _directive(self, name: str, arg: str, body: list[str], blocks: list[_Block]) -> None:
        short = name.split(":")[-1]
        options, content = _split_options(body)
        if short in _DROP_DIRECTIVES:
            return
        if short in _CODE_DIRECTIVES:
            code = "\n".join(ln for ln in content if not ln.startswith("@savefig"))
            if code.strip():
                lang = arg.split()[0] if arg else _guess_lang(code)
                lang = "python" if lang in {"ipython", "ipython3", "python3", "py"} else lang
                blocks.append(_Block("code", fence(code, lang)))
            return
        if short == "math":
            math = "\n".join([arg, *content]).strip()
            if math:
                blocks.append(_Block("code", fence(math, "math")))
            return
        if short == "plot":
            if content and any(ln.strip() for ln in content):
                blocks.append(_Block("code", fence("\n".join(content), "python")))
            return
        if short == "raw":
            if arg.lower() == "html":
                text = html_fragment_to_text("\n".join(content))
                for para in re.split(r"\n\s*\n", text):
                    if para.strip():
                        blocks.append(_Block("p", re.sub(r"\s+", " ", para).strip()))
            return
        if short == "list-table":
            if arg:
                blocks.append(_Block("p", self.inline(arg)))
            rows = _list_table_rows(content)
            if rows:
                blocks.append(_Block("table", "\n".join(pipe_row(self._cells(r)) for r in rows)))
            return
        if short == "csv-table":
            if arg:
                blocks.append(_Block("p", self.inline(arg)))
            header = options.get("header")
            rows = list(csv.reader(io.StringIO("\n".join(content)), skipinitialspace=True))
            if header:
                rows.insert(0, next(csv.reader([header], skipinitialspace=True)))
            text = "\n".join(pipe_row(self._cells(r)) for r in rows if any(r))
            if text:
                blocks.append(_Block("table", text))
            return
        inner = self._blocks(content)
        if short in _ADMONITION_LABELS or short in _VERSION_LABELS:
            label = _ADMONITION_LABELS.get(short) or f"{_VERSION_LABELS[short]} {arg}".strip()
            if short in _ADMONITION_LABELS and arg:
                inner.insert(0, _Block("p", self.inline(arg)))
            if inner and inner[0].kind == "p":
                inner[0] = _Block("p", f"{label}: {inner[0].text}")
            else:
                inner.insert(0, _Block("p", f"{label}."))
            blocks.extend(inner)
            return
        if short in _TITLED_CONTAINERS:
            if arg and short not in {"only", "figure", "container", "hlist", "grid", "tab-set"}:
                blocks.append(_Block("p", self.inline(arg)))
            blocks.extend(inner)
            return
        # Domain directives (attribute, method, setting, ...) describe an object: keep its name.
        if arg:
            blocks.append(_Block("p", f"`{arg}`"))
        blocks.extend(inner)

    def _table(self, lines: list[str], i: int, blocks: list[_Block]) -> int:
        if _GRID_BORDER_RE.match(lines[i]):
            j = i
            while j < len(lines) and lines[j].strip().startswith(("+", "|")):
                j += 1
            rows = _grid_table_rows(lines[i:j])
            if rows:
                blocks.append(_Block("table", "\n".join(pipe_row(self._cells(r)) for r in rows)))
                return j
            return 0
        if _SIMPLE_BORDER_RE.match(lines[i]):
            j, borders = i + 1, [i]
            while j < len(lines):
                if _SIMPLE_BORDER_RE.match(lines[j]):
                    borders.append(j)
                    if j + 1 >= len(lines) or not lines[j + 1].strip():
                        break
                j += 1
            if len(borders) < 2 or j >= len(lines):
                return 0
            rows = _simple_table_rows(lines[i : j + 1])
            blocks.append(_Block("table", "\n".join(pipe_row(self._cells(r)) for r in rows)))
            return j + 1
        return 0

    def _cells(self, cells: list[str]) -> list[str]:
        return [self.inline(c) for c in cells]

    def _list_item(self, lines: list[str], i: int, blocks: list[_Block]) -> int:
        match = _BULLET_RE.match(lines[i]) or _ENUM_RE.match(lines[i])
        if not match or not match.group(3).strip():
            return 0
        enum = not _BULLET_RE.match(lines[i])
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if enum and nxt.strip() and _indent(nxt) == 0 and not _ENUM_RE.match(nxt):
            return 0  # "A. Smith wrote" - a sentence, not a list
        width = len(match.group(1)) + len(match.group(2))
        j = i + 1
        while j < len(lines):
            if lines[j].strip() and _indent(lines[j]) < width:
                break
            if not lines[j].strip():
                k = j
                while k < len(lines) and not lines[k].strip():
                    k += 1
                if k >= len(lines) or _indent(lines[k]) < width:
                    break
            j += 1
        item_lines = [
            match.group(3),
            *(ln[width:] if len(ln) >= width else "" for ln in lines[i + 1 : j]),
        ]
        inner = self._blocks(item_lines)
        marker = "1." if enum else "-"
        for k, block in enumerate(inner):
            if k == 0 and block.kind == "p":
                blocks.append(_Block("li", f"{marker} {block.text}"))
            elif block.kind == "li":
                blocks.append(_Block("li", "\n".join("  " + ln for ln in block.text.split("\n"))))
            else:
                blocks.append(block)
        return j

    def _doctest(self, lines: list[str], i: int, blocks: list[_Block]) -> int:
        if not lines[i].startswith(">>>"):
            return 0
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        blocks.append(_Block("code", _doctest_fence(lines[i:j])))
        return j

    def _line_block(self, lines: list[str], i: int, blocks: list[_Block]) -> int:
        if not re.match(r"^\|(\s|$)", lines[i]):
            return 0
        j = i
        texts: list[str] = []
        while j < len(lines) and re.match(r"^\|(\s|$)", lines[j]):
            texts.append(lines[j][1:].strip())
            j += 1
        text = " ".join(t for t in texts if t)
        if text:
            blocks.append(_Block("p", self.inline(text)))
        return j

    def _paragraph(self, lines: list[str], i: int, blocks: list[_Block]) -> int:
        j = i
        para: list[str] = []
        while j < len(lines) and lines[j].strip() and _indent(lines[j]) == 0:
            if para and _ADORNMENT_RE.match(lines[j + 1] if j + 1 < len(lines) else ""):
                break  # the next line is a heading title
            para.append(lines[j].strip())
            j += 1
        literal = bool(para) and para[-1].endswith("::")
        field_match = _FIELD_RE.match(para[0]) if para else None
        text = " ".join(para)
        if literal:
            text = text[:-2].rstrip()
            text = text + ":" if text and not text.endswith(" ") and para[-1] != "::" else text
            text = text.rstrip()
        if field_match:
            text = f"{field_match.group(1)}: {text[field_match.end() :].strip()}".strip()
        if text:
            blocks.append(_Block("p", self.inline(text)))
        if literal:
            k = j
            while k < len(lines) and not lines[k].strip():
                k += 1
            if k < len(lines) and _indent(lines[k]) > 0:
                end = _block_end(lines, k, 1)
                code = "\n".join(_dedent(lines[k:end]))
                blocks.append(_Block("code", fence(code, _guess_lang(code))))
                return end
        return max(j, i + 1)

    # --- inline level ---------------------------------------------------------------------
    def inline(self, text: str) -> str:
        """Convert inline reST markup (roles, literals, links, references) to Markdown."""
        kept: list[str] = []

        def keep(value: str) -> str:
            kept.append(value)
            return f"\x00{len(kept) - 1}\x00"

        text = re.sub(r"``(.+?)``", lambda m: keep(f"`{m.group(1)}`"), text)
        text = re.sub(
            r":(?P<role>[\w.+-]+(?::[\w.+-]+)*):`(?P<body>[^`]+)`",
            lambda m: keep(_role(m.group("role"), m.group("body"))),
            text,
        )
        text = re.sub(
            r"`([^`<]*?)\s*<([^`>]+)>`__?", lambda m: m.group(1).strip() or m.group(2), text
        )
        text = re.sub(r"`([^`]+)`__?", r"\1", text)
        text = re.sub(r"\s?\[(#[\w-]*|\d+|\*|[A-Za-z][\w-]*)\]_", "", text)
        text = re.sub(r"\b([A-Za-z][\w-]*[A-Za-z0-9])_(?=[\s.,;:)!?'\"]|$)", r"\1", text)
        for name, value in self.substitutions.items():
            text = text.replace(f"|{name}|", value)
        text = re.sub(r"\\ |\\$", "", text)
        text = re.sub(r"\\([^\w\s])", r"\1", text)
        return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)


def rst_to_markdown(src: str) -> str:
    """Convert a reST document to normalised Markdown."""
    return RstConverter().convert(src)


def _role(role: str, body: str) -> str:
    name = role.split(":")[-1]
    if name == "math":
        return f"${body}$"
    if name in {"sup", "superscript"}:
        return f"^{body}"
    if name in {"sub", "subscript"}:
        return f"_{body}"
    target = re.match(r"^(.*?)\s*<([^<>]+)>$", body, re.S)
    text = (target.group(1).strip() or target.group(2)) if target else body.strip()
    if not target:
        text = text.lstrip("!")
        if text.startswith("~"):
            text = text[1:].split(".")[-1]
    if name == "abbr":
        text = re.sub(r"\s*\(.*\)$", "", text)
    text = re.sub(r"\s+", " ", text)
    return f"`{text}`" if name in _CODE_ROLES else text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], start: int, min_indent: int) -> int:
    """Index after the indented block beginning at ``start`` (blank lines inside included)."""
    j = start
    last = start
    while j < len(lines):
        if lines[j].strip():
            if _indent(lines[j]) < min_indent:
                break
            last = j + 1
        j += 1
    return max(last, start)


def _dedent(lines: list[str]) -> list[str]:
    indents = [_indent(ln) for ln in lines if ln.strip()]
    cut = min(indents) if indents else 0
    out = [ln[cut:] for ln in lines]
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    k = 0
    while k < len(body) and _OPTION_RE.match(body[k]):
        match = re.match(r"^:([^:]+):\s*(.*)$", body[k])
        if match:
            options[match.group(1).strip()] = match.group(2).strip()
        k += 1
        while k < len(body) and body[k].startswith("   ") and body[k].strip():
            k += 1  # an option value continued on the next line
    content = body[k:]
    while content and not content[0].strip():
        content.pop(0)
    return options, content


def _guess_lang(code: str) -> str:
    first = code.lstrip()
    if first.startswith(">>>"):
        return "pycon"
    if first.startswith("$ "):
        return "console"
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return "text"
    return "python"


def _doctest_fence(lines: list[str]) -> str:
    return fence("\n".join(_dedent(lines)), "pycon")


def _join_blocks(blocks: list[_Block]) -> str:
    out: list[str] = []
    prev: _Block | None = None
    for block in blocks:
        if not block.text.strip():
            continue
        if (
            prev is not None
            and prev.kind == block.kind == "code"
            and prev.text.startswith("```pycon\n")
            and block.text.startswith("```pycon\n")
        ):
            # consecutive doctest fragments separated only by blank lines: one block
            prev = _Block(
                "code", prev.text[: -len("\n```")] + "\n\n" + block.text[len("```pycon\n") :]
            )
            out[-1] = prev.text
            continue
        if out:
            out.append("\n" if prev is not None and prev.kind == block.kind == "li" else "\n\n")
        out.append(block.text)
        prev = block
    return "".join(out)


def _grid_table_rows(lines: list[str]) -> list[list[str]]:
    border = lines[0].strip()
    offset = len(lines[0]) - len(lines[0].lstrip())
    cuts = [k for k, ch in enumerate(border) if ch == "+"]
    rows: list[list[str]] = []
    current: list[list[str]] | None = None
    for raw in lines[1:]:
        line = raw[offset:]
        if _GRID_BORDER_RE.match(line):
            if current:
                rows.append([" ".join(p for p in cell if p) for cell in current])
            current = None
            continue
        if current is None:
            current = [[] for _ in range(len(cuts) - 1)]
        for c in range(len(cuts) - 1):
            piece = line[cuts[c] + 1 : cuts[c + 1]] if len(line) > cuts[c] else ""
            current[c].append(piece.strip().strip("|").strip())
    if current:
        rows.append([" ".join(p for p in cell if p) for cell in current])
    return [r for r in rows if any(r)]


def _simple_table_rows(lines: list[str]) -> list[list[str]]:
    border = lines[0]
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
    starts = [s for s, _ in spans]
    rows: list[list[str]] = []
    for line in lines[1:]:
        if _SIMPLE_BORDER_RE.match(line) or not line.strip():
            continue
        cells = []
        for c, start in enumerate(starts):
            end = starts[c + 1] if c + 1 < len(starts) else len(line)
            cells.append(line[start:end].strip())
        if rows and not cells[0] and any(cells[1:]):
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def _list_table_rows(lines: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    for line in lines:
        row = re.match(r"^\*\s+-\s*(.*)$", line)
        cell = re.match(r"^\s+-\s*(.*)$", line)
        if row:
            rows.append([row.group(1).strip()])
        elif cell and rows:
            rows[-1].append(cell.group(1).strip())
        elif rows and line.strip():
            rows[-1][-1] = f"{rows[-1][-1]} {line.strip()}".strip()
    return rows
