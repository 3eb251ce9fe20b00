"""Web pages flattened to text (the user's ML page) to normalised Markdown.

The flattening lost all markup: headings are bare short lines, tables come one cell per line,
code blocks are collapsed onto one line (comments run into code), diagrams and box-drawing
formula lists are inline. This module recovers the structure with general heuristics:

- a *code line* is a long line that starts like Python and carries several code signals;
  :func:`reflow_code` splits it back into statements and comments;
- the short line right before a code line is its lead-in (a paragraph, not a heading);
- ``graph``/``timeline``/``mindmap`` lines start mermaid diagrams;
- a ``─────`` rule starts a box of formula lines (fenced as text) that runs until prose,
  a lead-in, a heading or code;
- a run of short lines between blocks is headings (at most two at each end: the page puts an
  H2 directly over an H3) and, when long enough, a table whose column count is the one whose
  columns are most homogeneous.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass

from ingest.cleaning import fence, pipe_row

_TERMINAL = ".!?:;,"
_BOX_RULE_RE = re.compile(r"^[─━═┄┈╌-]{8,}$")
_DIAGRAM_START_RE = re.compile(
    r"^(graph|flowchart)\s+(TD|TB|BT|LR|RL)\b|^(timeline|mindmap|sequenceDiagram|classDiagram"
    r"|stateDiagram(-v2)?|erDiagram|gantt|pie|journey|gitGraph)\s*$"
)
_GRAPH_LINE_RE = re.compile(
    r"^[\w-]+\s*(\[|\(|\{|>)|-->|---|==>|-\.->|:::|^(subgraph|end|style|classDef|class|click|linkStyle)\b"
)
_TIMELINE_LINE_RE = re.compile(r"^(title|section)\b|^[^:]{1,40}\s:\s|^\s*:")
_CODE_START_RE = re.compile(
    r"^(import\s+\w|from\s+[\w.]+\s+import\b|#\s|class\s+\w|def\s+\w|@\w|"
    r"[A-Za-z_][\w.]*(\[[^\]]*\])?(\s*,\s*[A-Za-z_][\w.]*)*\s*[-+*/@]?=\s)"
)
_CODE_SIGNAL_RES = [
    re.compile(p)
    for p in (
        r"\b\w+\(",
        r"\s=\s",
        r"\bimport\s",
        r"#\s",
        r"\)\.",
        r"\w\[",
        r"\bdef\s|\bclass\s|\breturn\b|\bfor\s\w+\sin\b",
        r"[a-z)\]\d]#",
    )
]


@dataclass
class _Block:
    kind: str  # heading2, heading3, para, code, diagram, box, table
    lines: list[str]
    lang: str = ""


def webtext_to_markdown(src: str) -> str:
    """Recover headings, tables, code, diagrams and formula boxes of a flattened web page and
    render them as normalised Markdown."""
    lines = [ln.strip() for ln in src.split("\n") if ln.strip()]
    blocks = _structure(lines)
    return _render(blocks)


# --- line classification ------------------------------------------------------------------
def is_code_line(line: str) -> bool:
    """Whether a line is a code block collapsed onto one line."""
    if len(line) < 60 or not _CODE_START_RE.match(line):
        return False
    return sum(1 for r in _CODE_SIGNAL_RES if r.search(line)) >= 3


def _is_short(line: str) -> bool:
    return 0 < len(line) <= 80 and line[-1] not in _TERMINAL and not _BOX_RULE_RE.match(line)


def _is_heading_like(line: str) -> bool:
    return (
        0 < len(line) <= 70
        and len(line.split()) <= 10
        and line[-1] not in _TERMINAL
        and (line[0].isupper() or line[0].isdigit())
        and not re.search(r"[=:→←↑↓∂Σ√]|\s[-+*/]\s", line)
    )


def _is_prose(line: str) -> bool:
    return bool(line) and not _is_short(line) and not is_code_line(line)


# --- structure ----------------------------------------------------------------------------
def _structure(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    run: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < n else ""
        if is_code_line(line):
            _flush_run(run, blocks, "code")
            blocks.append(_Block("code", reflow_code(line).split("\n"), "python"))
            i += 1
            continue
        if nxt and is_code_line(nxt) and len(line) <= 120 and not is_code_line(line):
            _flush_run(run, blocks, "para")
            blocks.append(_Block("para", [line]))  # a code block's lead-in
            i += 1
            continue
        if _DIAGRAM_START_RE.match(line):
            _flush_run(run, blocks, "diagram")
            end = _diagram_end(lines, i)
            body = lines[i:end]
            blocks.append(_Block("diagram", body, "mermaid"))
            i = end
            continue
        if _BOX_RULE_RE.match(line):
            title = None
            if run and run[-1].endswith(":"):
                title = run.pop()
            _flush_run(run, blocks, "box")
            if (
                title is None
                and blocks
                and blocks[-1].kind == "para"
                and blocks[-1].lines[-1].endswith(":")
            ):
                pass  # the title was already emitted as a paragraph
            elif title:
                blocks.append(_Block("para", [title]))
            end = _box_end(lines, i + 1)
            body = [ln for ln in lines[i + 1 : end] if not _BOX_RULE_RE.match(ln)]
            blocks.append(_Block("box", body, "text"))
            i = end
            continue
        if _is_short(line) or line.endswith(":") and len(line) <= 80:
            run.append(line)
            i += 1
            continue
        _flush_run(run, blocks, "para")
        blocks.append(_Block("para", [line]))
        i += 1
    _flush_run(run, blocks, "end")
    return _assign_levels(blocks)


def _diagram_end(lines: list[str], start: int) -> int:
    kind = lines[start].split()[0]
    j = start + 1
    if kind in {"graph", "flowchart"}:
        while j < len(lines) and _GRAPH_LINE_RE.search(lines[j]):
            j += 1
        return j
    if kind == "timeline":
        while j < len(lines) and _TIMELINE_LINE_RE.search(lines[j]):
            j += 1
        return j
    # mindmap and others: short node lines; the last one or two before prose are headings
    while j < len(lines) and _is_short(lines[j]) and not is_code_line(lines[j]):
        if _DIAGRAM_START_RE.match(lines[j]) or _BOX_RULE_RE.match(lines[j]):
            break
        j += 1
    if j < len(lines):
        give_back = 0
        while (
            give_back < 2
            and j - give_back - 1 > start + 1
            and _is_heading_like(lines[j - give_back - 1])
        ):
            give_back += 1
        j -= give_back
    return j


def _box_end(lines: list[str], start: int) -> int:
    j = start
    while j < len(lines):
        line = lines[j]
        nxt = lines[j + 1] if j + 1 < len(lines) else ""
        if is_code_line(line) or _DIAGRAM_START_RE.match(line):
            break
        if nxt and is_code_line(nxt):
            break  # a lead-in
        if len(line) >= 100 and line[-1] in ".!?":
            break  # prose
        after = lines[j + 2] if j + 2 < len(lines) else ""
        introduces_prose = _is_prose(nxt) or (_is_heading_like(nxt) and _is_prose(after))
        if j > start and _is_heading_like(line) and not _is_box_line(line) and introduces_prose:
            break  # a heading (or an H2 over an H3) introducing prose
        j += 1
    return j


def _is_box_line(line: str) -> bool:
    return bool(re.search(r"[=→←↑↓∂Σ√·×]|—\s", line))


def _flush_run(run: list[str], blocks: list[_Block], before: str) -> None:
    """Turn a run of short lines into heading and table blocks."""
    if not run:
        return
    lines = list(run)
    run.clear()
    if len(lines) <= 2:
        blocks.extend(_heading_or_para(lines, before))
        return
    table = _find_table(lines, before)
    if table is None:
        tail = 2 if before != "end" else 0
        body, heads = lines[: len(lines) - tail], lines[len(lines) - tail :]
        blocks.append(_Block("para", body))
        blocks.extend(_heading_or_para(heads, before))
        return
    head, n_cols, tail = table
    if head:
        blocks.extend(_heading_or_para(lines[:head], "table"))
    cells = lines[head : len(lines) - tail]
    rows = [cells[k : k + n_cols] for k in range(0, len(cells), n_cols)]
    blocks.append(_Block("table", [pipe_row(r) for r in rows]))
    if tail:
        blocks.extend(_heading_or_para(lines[len(lines) - tail :], before))


def _heading_or_para(lines: list[str], before: str) -> list[_Block]:
    if before == "end" or not all(_is_heading_like(ln) for ln in lines):
        return [_Block("para", [ln]) for ln in lines]
    if len(lines) == 2:
        return [_Block("heading2", [lines[0]]), _Block("heading3", [lines[1]])]
    return [_Block("heading", [lines[0]])]


def _find_table(lines: list[str], before: str) -> tuple[int, int, int] | None:
    """Best (head headings, columns, tail headings) split of a run of short lines into a
    table, or None when no split gives homogeneous columns."""
    best: tuple[float, tuple[int, int, int]] | None = None
    for head in range(0, 3):
        for tail in range(0, 3):
            if tail == 0 and before not in {"end"}:
                continue  # a table is never directly followed by prose on such pages
            if head + tail and not all(
                _is_heading_like(ln) for ln in lines[:head] + lines[len(lines) - tail :]
            ):
                continue
            cells = lines[head : len(lines) - tail]
            for n_cols in range(2, 9):
                if len(cells) % n_cols or len(cells) // n_cols < 3:
                    continue
                score = _column_score(cells, n_cols) + 0.02 * n_cols + 0.03 * (head + tail)
                if best is None or score < best[0]:
                    best = (score, (head, n_cols, tail))
    if best is None or best[0] > 0.85:
        return None
    return best[1]


def _features(cell: str) -> list[float]:
    words = cell.split()
    return [
        math.log(1 + len(cell)),
        float(len(words)),
        float("," in cell),
        float(bool(re.search(r"\d", cell))),
        float(all(w[0].isupper() or not w[0].isalpha() for w in words)),
        float(bool(re.search(r"[()^/+*=·Φ∞Σ]", cell))),
        sum(c.isupper() for c in cell) / max(1, len(cell)),
    ]


def _column_score(cells: list[str], n_cols: int) -> float:
    """Pooled within-column variance over total variance of cell features (data rows only):
    low when each column holds one kind of value."""
    rows = [cells[k : k + n_cols] for k in range(n_cols, len(cells), n_cols)]
    feats = [[_features(c) for c in row] for row in rows]
    n_feat = len(feats[0][0])
    ratios = []
    for f in range(n_feat):
        values = [cell[f] for row in feats for cell in row]
        mean = sum(values) / len(values)
        total = sum((v - mean) ** 2 for v in values)
        if total < 1e-9:
            continue
        within = 0.0
        for c in range(n_cols):
            col = [row[c][f] for row in feats]
            m = sum(col) / len(col)
            within += sum((v - m) ** 2 for v in col)
        # degrees-of-freedom corrected, so that more columns (fewer rows each) do not win
        # just by leaving fewer values per column
        dof_within = max(1, len(values) - n_cols)
        ratios.append((within / dof_within) / (total / (len(values) - 1)))
    header_penalty = sum(
        0.1 for h in cells[:n_cols] if not _is_heading_like(h) or len(h.split()) > 4
    )
    return (sum(ratios) / len(ratios) if ratios else 1.0) + header_penalty


def _assign_levels(blocks: list[_Block]) -> list[_Block]:
    """Single headings become H3 once an H2 exists (H2 before); pairs are H2 over H3."""
    seen_h2 = False
    for block in blocks:
        if block.kind == "heading2":
            seen_h2 = True
        elif block.kind == "heading":
            block.kind = "heading3" if seen_h2 else "heading2"
            seen_h2 = seen_h2 or block.kind == "heading2"
    return blocks


def _render(blocks: list[_Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        if block.kind == "heading2":
            parts.append(f"## {block.lines[0]}")
        elif block.kind == "heading3":
            parts.append(f"### {block.lines[0]}")
        elif block.kind in {"code", "diagram", "box"}:
            parts.append(fence("\n".join(block.lines), block.lang))
        elif block.kind == "table":
            parts.append("\n".join(block.lines))
        else:
            parts.extend(block.lines)
    return "\n\n".join(parts) + "\n"


# --- code reflow --------------------------------------------------------------------------
_KEYWORD_STARTS = re.compile(
    r"(for\s+[\w, ()]+\s+in\s|if\s[^#]*:\s|elif\s|else:|try:|except\b|finally:|while\s|with\s|"
    r"return\b|def\s+\w+\(|class\s+\w+[(:]|import\s+\w|from\s+[\w.]+\s+import\b|print\(|raise\s|"
    r"break\b|continue\b|pass\b|yield\b|@\w)"
)
_ASSIGN_AHEAD = re.compile(
    r"[A-Za-z_][\w.]*(\[[^\]]*\])?(\s*,\s*[A-Za-z_][\w.]*)*\s*(\*\*|//|[-+*/@%])?=(?!=)"
)
# "name = word word": two bare words in a row are not Python (unless the second is a keyword,
# as in "y = a if b else c"), so this is a comment's prose.
_WORDS_ASSIGNED = re.compile(
    r"\w+\s*=\s*[A-Za-z_]\w*\s+(?!(?:if|and|or|not|in|is|for|else|async|await|lambda)\b)"
    r"[A-Za-z_]\w*\b(?!\s*[=(.\[])"
)
_PY_KEYWORDS = {
    "for", "if", "def", "class", "return", "import", "from", "with", "while", "print", "try",
    "raise", "elif", "else",
}  # fmt: skip


def reflow_code(line: str) -> str:
    """Split a code block that was collapsed onto one line back into statements and
    comments, one per line (indentation is not recoverable and is not guessed)."""
    known = _known_identifiers(line)
    out: list[str] = []
    i = 0
    n = len(line)
    while i < n:
        code_end = _code_segment_end(line, i)
        code = line[i:code_end]
        for statement in _split_statements(code):
            out.extend(_unglue_import(statement, known))
        if code_end >= n:
            break
        comment_end = _comment_end(line, code_end, known)
        comment = line[code_end:comment_end].strip()
        if _is_inline_comment(line, i, code_end, comment, out):
            out[-1] = f"{out[-1].rstrip()}  {comment}"
        else:
            out.append(comment)
        i = comment_end
    return "\n".join(s.rstrip() for s in out if s.strip())


_IMPORT_THEN_ASSIGN = re.compile(r"((?:from\s+[\w.]+\s+)?import\s[^=#]*?)(\w+)(\s*=(?!=).*)")


def _unglue_import(statement: str, known: set[str]) -> list[str]:
    """An import whose last name ran into the next statement's assignment
    (``from sklearn.model_selection import train_test_splitdf = pd.read_csv(…)``: an import
    has no ``=``) split where the glued word is two names the code uses (``train_test_split``
    and ``df``), or else where its end is one; otherwise the statement as it is."""
    match = _IMPORT_THEN_ASSIGN.fullmatch(statement)
    if match is None:
        return [statement]
    head, word, rest = match.groups()
    cuts = range(len(word) - 1, 0, -1)  # the shortest assigned name first
    # Both halves names the code uses; else the assigned one (``npapp``: ``np`` is imported
    # and never used again, ``app`` is used).
    for cut in [*(c for c in cuts if word[:c] in known), *cuts]:
        if word[cut:] in known:
            return [f"{head}{word[:cut]}", f"{word[cut:]}{rest}"]
    return [statement]


def _is_inline_comment(line: str, start: int, at: int, comment: str, out: list[str]) -> bool:
    """Whether the comment at ``line[at]`` trailed the statement before it on one source line.

    Collapsing dropped the line breaks but kept the spaces: a "#" glued to code
    (``Seq2Seq# LoRA: …``) began a line of its own, while one after a space either trailed its
    code (``r=16,  # rank — higher = more capacity``) or began an indented line. The indented
    ones are told apart by what they usually are: the body of a block (after ``:``), or a
    heading for the code below it, written as a capitalised sentence (``# Block 2: …``)."""
    if at <= start or not line[at - 1].isspace() or not out or out[-1].lstrip().startswith("#"):
        return False
    if out[-1].rstrip().endswith(":"):
        return False
    return not re.match(r"#+\s*[A-Z][a-z]", comment)


def _known_identifiers(line: str) -> set[str]:
    """Names the code really uses: identifiers seen twice as whole words, or once in a code
    position (after an opening bracket or operator, or before a call, index or attribute)."""
    counts: dict[str, int] = {}
    for match in re.finditer(r"\b[A-Za-z_]\w*\b", line):
        word = match.group(0)
        before = line[: match.start()].rstrip()[-1:]
        after = line[match.end() :].lstrip()[:1]
        weight = 2 if (before and before in "([=+*/%<>") or (after and after in ")(.[") else 1
        counts[word] = counts.get(word, 0) + weight
    return {
        w for w, c in counts.items() if c >= 2 and len(w) >= 2 and not keyword.iskeyword(w)
    } | _PY_KEYWORDS


def _code_segment_end(line: str, start: int) -> int:
    """Index of the first ``#`` outside a string literal at or after ``start``."""
    i = start
    quote: str | None = None
    while i < len(line):
        if quote:
            if line.startswith(quote, i) and line[i - 1] != "\\":
                i += len(quote)
                quote = None
                continue
            i += 1
            continue
        if line.startswith(('"""', "'''"), i):
            quote = line[i : i + 3]
            i += 3
            continue
        ch = line[i]
        if ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
        i += 1
    return len(line)


def _comment_end(line: str, start: int, known: set[str]) -> int:
    """Where code resumes after the comment starting at ``start``: the earliest of several
    signs of a statement start (see the ``_resume_*`` helpers), else the line end."""
    text = line[start:]
    body = len(re.match(r"#+\s*[─━-]*\s*", text).group(0))
    finders = (_resume_at_next_comment, _resume_after_spaced_code, _resume_at_unmatched_bracket,
               _resume_after_glued_punctuation, _resume_at_case_change)  # fmt: skip
    candidates = [pos for find in finders if (pos := find(text, body)) is not None]
    word_pos = _resume_at_known_word(text, body, known)
    if word_pos is not None:
        candidates.append(word_pos)
    if not candidates:
        return start + len(text)
    resume = min(candidates)
    glued = re.match(r"[A-Za-z_]\w*", text[resume:])
    if glued and resume > body:  # code found at a word start may carry the comment's last word
        resume += _glued_head(glued.group(0), known, line)
    return start + resume


def _glued_head(word: str, known: set[str], line: str) -> int:
    """The length of a comment's last prose word glued to the start of ``word``, a name the
    code uses (``representationsnn.Dropout(p=0.5)``: "representations" + ``nn``); 0 when
    ``word`` is not so glued."""
    # A block may never write ``nn`` unglued; an imported name is one the code uses.
    imported = re.findall(r"\bimport\s+(\w+)(?:\s+as\s+(\w+))?", line)
    names = known | _MODULE_ALIASES | {name for pair in imported for name in pair if name}
    for k in range(3, len(word) - 1):  # the longest known name first
        if word[k - 1] != "_" and word[k:] in names and _glued_once(word, k, line):
            return k
    return 0


# The usual import aliases, names code uses even where every use in a block is glued to the
# comment before it (``# … learning ratesnn.BatchNorm1d(…)``).
_MODULE_ALIASES = {"nn", "np", "pd", "plt", "sns", "tf", "optim", "torch", "cv2", "sp", "sk"}


def _resume_at_next_comment(text: str, body: int) -> int | None:
    """A second ``#`` starts another comment; a ``─── `` rule glued to code ends a banner."""
    nxt = text.find("#", body)
    if nxt <= 0:
        return None
    rule = re.match(r".*?[─━]{3,}(?=\S)", text[body:])
    return min(nxt, body + rule.end()) if rule and body + rule.end() < nxt else nxt


def _resume_after_spaced_code(text: str, body: int) -> int | None:
    """A dotted call, a tuple opening with a string, an augmented assignment, ``else:`` or a
    keyword argument (``lora_alpha=32,``) after a space (code that followed an inline comment
    on the next source line)."""
    match = re.search(
        r"(?<=\s)([A-Za-z_]\w*(\.\w+)+\(|\([\"'])"
        r"|(?<=\s)[A-Za-z_][\w.]*(\[[^\]]*\])*\s(\*\*|//|[-+*/@%])=\s|(?<=\s)else:"
        r"|(?<=\s)[A-Za-z_]\w*=(?![=\s])",
        text[body:],
    )
    return body + match.start() if match else None


def _resume_at_unmatched_bracket(text: str, body: int) -> int | None:
    """A bracket closing one opened before the comment (the comment sat inside a call)."""
    depth = 0
    for k, ch in enumerate(text[body:]):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return body + k
    return None


def _resume_after_glued_punctuation(text: str, body: int) -> int | None:
    """A statement glued to a closing bracket, quote or banner rule: ``(used in PCA)cov =``."""
    for match in re.finditer(r"(?<=[─━)\]}\"'])(?=[A-Za-z_])", text[body:]):
        pos = body + match.start()
        if _KEYWORD_STARTS.match(text, pos) or _ASSIGN_AHEAD.match(text, pos):
            return pos
    return None


def _resume_at_case_change(text: str, body: int) -> int | None:
    """A lowercase word glued to a capitalised name that is assigned, called or indexed:
    ``5 featuresX = ...``, ``per-requestMODEL_URI = ...``."""
    match = re.search(
        r"\b[a-z]{3,}(?=[A-Z][\w.]*(\[[^\]]*\])?\s*(=|\(|\.|,\s*\w+\s*[,=]))", text[body:]
    )
    return body + match.end() if match else None


def _resume_at_known_word(text: str, body: int, known: set[str]) -> int | None:
    """The first comment word that ends in a keyword or a name the code uses (``rategamma =``
    splits before ``gamma``), or a spaced word that starts an assignment or statement."""
    for match in re.finditer(r"[A-Za-z_]\w*", text[body:]):
        word = match.group(0)
        pos = body + match.start()
        after = text[body + match.end() :]
        for k in range(1, len(word) - 1):
            suffix = word[k:]
            if suffix in _PY_KEYWORDS:
                if _KEYWORD_STARTS.match(suffix + after):
                    return pos + k
            elif (
                word[k - 1] != "_"  # a snake_case part, not a glued word
                and suffix in known
                and (word not in known or _glued_once(word, k, text))
                and re.match(r"(\s*(\*\*|//|[-+*/@%])?=(?!=)|\(|\.\w|\s*,\s*\w+\s*=|\[)", after)
            ):
                return pos + k
        if re.match(r"[a-z]{3,}[A-Z]", word) or match.start() == 0 or text[pos - 1] != " ":
            continue  # glued case changes are _resume_at_case_change's job
        rest = text[pos:]
        assigns = (
            _ASSIGN_AHEAD.match(rest)
            and not re.match(r"\w+\s*=\s*\w+\s*[+\-*/]", rest)  # "y = wx + b" is prose
            and not _WORDS_ASSIGNED.match(rest)  # "higher = more capacity" is prose
            and " = " in rest[: len(word) + 40]
        )
        starts = _KEYWORD_STARTS.match(rest) and re.match(
            r"(for \w+(, \w+)* in |return |print\(|if .*?: |def \w+\(|class \w+)", rest
        )
        if assigns or starts:
            return pos
    return None


def _glued_once(word: str, k: int, text: str) -> bool:
    """Whether ``word`` is a comment's last prose word glued to a name the code uses at ``k``,
    though it reads as a name itself: ``representationsnn.Dropout(p=0.5)`` is written once,
    before a ``.``, so ``representationsnn`` counted as used; its head is a lower-case word."""
    head = word[:k]
    once = len(re.findall(rf"\b{re.escape(word)}\b", text)) == 1
    return once and len(head) >= 3 and head.isalpha() and head.islower()


def _split_statements(code: str) -> list[str]:
    """Split flattened code (no comments) at statement boundaries outside brackets and
    strings: after a block header's colon, and where a statement visibly starts."""
    cuts: list[int] = []
    depth = 0
    quote: str | None = None
    stmt_start = 0
    i = 0
    while i < len(code):
        if quote:
            if code.startswith(quote, i) and code[i - 1] != "\\":
                i += len(quote)
                quote = None
                continue
            i += 1
            continue
        triple = re.match(r"[rfbRFB]?('\'\'|\"\"\")", code[i:])
        if triple:
            quote = triple.group(1)
            i += triple.end()
            continue
        ch = code[i]
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0 and i > stmt_start:
            cut = _statement_cut(code, i, stmt_start)
            if cut is not None:
                cuts.append(cut)
                stmt_start = cut
        i += 1
    bounds = [0, *cuts, len(code)]
    pieces = (code[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False))
    return [p for p in pieces if p]


_HEADER_RE = re.compile(r"(for|if|elif|else|while|def|class|with|try|except|finally|async)\b")
_SPACED_START_RE = re.compile(
    r"(return\b|for \w+(, \w+)* in |print\(|def \w+\(|class \w+[(:]|break\b|continue\b|pass\b"
    r"|raise\s|else:|elif\s|except\b|finally:|try:|if [^=]*:\s|while\s|with\s|del\s|yield\s|@\w)"
)
_GLUED_START_RE = re.compile(
    r"(import \w|from [\w.]+ import\b|class [A-Z]\w*[(:]|(async )?def \w+\(|@\w+[.(]|for \w+(, \w+)* in )"
)
_CONTINUES_RE = re.compile(
    r"\b(in|and|or|not|return|lambda|if|else|import|as|is|yield|await|assert|del|raise|from|with|async)$"
)


def _statement_cut(code: str, i: int, stmt_start: int) -> int | None:
    """Where a new statement starts at (or right after) position ``i`` at bracket depth 0,
    or None: after a block header's colon, a statement after a space or after a closed
    expression, or an import/def/class glued to the previous token."""
    head = code[stmt_start:i].lstrip()
    if (
        code[i] == ":"
        and _HEADER_RE.match(head)
        and code[i + 1 : i + 2] == " "
        and code[i + 2 :].strip()
    ):
        return i + 1
    prev = code[:i].rstrip()
    prev_char = prev[-1:]
    before = code[i - 1]
    after_gap = before in " :" or prev_char in ")]}\"'" or prev_char.isdigit()
    clean_boundary = (
        before == " "
        or (not before.isalnum() and before != "_")
        or re.search(r"(?<![\w.])\d+(\.\d+)?$", code[:i]) is not None  # "0.0alpha = 0.01"
    )
    if (
        after_gap
        and clean_boundary
        and prev_char not in ",(=+-*/%<>!&|^~:@[{."
        and not _CONTINUES_RE.search(prev)
        and (_ASSIGN_AHEAD.match(code, i) or _SPACED_START_RE.match(code, i))
    ):
        return i
    if (
        (before.isalnum() or before in ")]")
        and _GLUED_START_RE.match(code, i)
        and not re.fullmatch(r"\w+", code[stmt_start:i])
    ):
        return i
    return None
