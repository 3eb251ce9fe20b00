"""Structure-aware chunking of normalised Markdown documents.

A document is cut into sections on ATX headings (never inside ``` fences), each section is
split with langchain's ``RecursiveCharacterTextSplitter`` measured in the embedding model's
own word pieces, and every chunk's *indexed* text (``title > section path`` header, blank
line, text) is guaranteed to fit the model's window, so nothing is silently truncated.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.types import Chunk, Document, make_chunk_id

# Bump when the chunking algorithm changes: stored chunks made by an older chunker are then
# re-chunked on the next ingest even if their document did not change.
CHUNKER_VERSION = "1"

# Sections shorter than this (in word pieces) are merged into a neighbour instead of
# becoming near-empty chunks of their own.
MIN_SECTION_TOKENS = 30

# Word pieces reserved for the [CLS] and [SEP] tokens the model adds around every input.
SPECIAL_TOKENS = 2

# Joins the blocks of a section (paragraphs, whole code fences) for the splitter. An ASCII
# control character: the BERT tokenizer drops it (0 word pieces) and Markdown never has it.
_BLOCK_SEP = "\x1f"

# Split order inside a section: between blocks first (keeps a fence whole when it fits), then
# paragraphs, lines, sentences, clauses, words. No "" (character) level: a piece that still
# overflows is cut by tokens instead (fast and exact).
_SEPARATORS = [_BLOCK_SEP, "\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "]

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
# Any indentation: fences inside list items come indented by four or more spaces.
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")

# A paragraph at most this long right before a code fence is its lead-in ("Install it
# with:") and stays in the same chunk as (the start of) the fence.
LEAD_IN_TOKENS = 40

# Standard chunk metadata keys; document metadata may not override them.
_CORE_KEYS = ("title", "url", "source", "topic", "format", "doc_hash", "n_chunks")


@dataclass
class Section:
    """A run of document text under one heading path."""

    path: list[str]
    body: str
    level: int = 0  # heading level that opened the section (0 = before any heading)


@dataclass
class _Block:
    text: str
    fence: bool = False


@dataclass
class _TokenCounter:
    tokenizer: Any
    cache: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Measuring whole sections is the point here; silence the tokenizer's one-off
        # "longer than the maximum sequence length" warning (nothing is fed to the model).
        warned = getattr(self.tokenizer, "deprecation_warnings", None)
        if isinstance(warned, dict):
            warned["sequence-length-is-longer-than-the-specified-maximum"] = True

    def __call__(self, text: str) -> int:
        n = self.cache.get(text)
        if n is None:
            n = len(self.tokenizer.tokenize(text)) if text.strip() else 0
            if len(self.cache) < 100_000:
                self.cache[text] = n
        return n


def split_sections(markdown: str) -> list[Section]:
    """Cut Markdown into sections at ATX headings outside code fences, tracking the heading
    path. The heading line itself is not part of the body (the path carries it)."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    level = 0
    fence: str | None = None

    def flush() -> None:
        text = "\n".join(body).strip("\n")
        sections.append(Section(path=[t for _, t in stack], body=text, level=level))

    for line in markdown.splitlines():
        fence_match = _FENCE.match(line)
        if fence is not None:
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
                and not fence_match.group(2).strip()
            ):
                fence = None
            body.append(line)
            continue
        if fence_match:
            fence = fence_match.group(1)
            body.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            body = []
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            continue
        body.append(line)
    flush()
    return [s for s in sections if s.body.strip() or s.path]


def _split_blocks(body: str) -> list[_Block]:
    """Paragraphs and whole fenced code blocks of a section body, in order."""
    blocks: list[_Block] = []
    prose: list[str] = []
    code: list[str] = []
    fence: str | None = None

    def flush_prose() -> None:
        text = "\n".join(prose).strip("\n")
        for para in re.split(r"\n[ \t]*\n", text):
            if para.strip():
                blocks.append(_Block(para.strip("\n")))
        prose.clear()

    for line in body.splitlines():
        fence_match = _FENCE.match(line)
        if fence is None:
            if fence_match:
                flush_prose()
                fence = fence_match.group(1)
                code.append(line)
            else:
                prose.append(line)
            continue
        code.append(line)
        if (
            fence_match
            and fence_match.group(1)[0] == fence[0]
            and len(fence_match.group(1)) >= len(fence)
            and not fence_match.group(2).strip()
        ):
            blocks.append(_Block("\n".join(code), fence=True))
            code = []
            fence = None
    if code:  # an unclosed fence: close it so every chunk stays well-formed Markdown
        blocks.append(_Block("\n".join([*code, fence or "```"]), fence=True))
    flush_prose()
    return blocks


def _merge_small_sections(sections: list[Section], count: _TokenCounter) -> list[Section]:
    """Fold sections with almost no text into a neighbour: forward into a following
    subsection (its path already names this heading), otherwise back into the previous."""
    merged: list[Section] = []
    i = 0
    pending_prefix = ""  # body of a small parent section waiting for its first child
    while i < len(sections):
        sec = sections[i]
        body = f"{pending_prefix}\n\n{sec.body}".strip("\n") if pending_prefix else sec.body
        pending_prefix = ""
        small = count(body) < MIN_SECTION_TOKENS
        nxt = sections[i + 1] if i + 1 < len(sections) else None
        if (
            small
            and nxt is not None
            and nxt.path[: len(sec.path)] == sec.path
            and len(nxt.path) > len(sec.path)
        ):
            pending_prefix = body
        elif small and merged:
            heading = sec.path[-1] if sec.path else ""
            prev = merged[-1]
            extra = (
                f"{'#' * max(sec.level, 1)} {heading}\n\n{body}"
                if heading and body
                else (body or "")
            )
            if extra:
                prev.body = f"{prev.body}\n\n{extra}".strip("\n")
        elif small and nxt is not None and body:
            heading = sec.path[-1] if sec.path else ""
            nxt.body = (
                f"{'#' * max(sec.level, 1)} {heading}\n\n{body}\n\n{nxt.body}"
                if heading
                else f"{body}\n\n{nxt.body}"
            )
        elif body.strip():
            merged.append(Section(path=sec.path, body=body, level=sec.level))
        i += 1
    if pending_prefix:
        merged.append(Section(path=sections[-1].path, body=pending_prefix))
    return merged


def _token_split(text: str, tokenizer: Any, budget: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``budget`` word pieces at token boundaries."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    pieces: list[str] = []
    for start in range(0, len(offsets), budget):
        window = offsets[start : start + budget]
        begin = window[0][0]
        end = offsets[start + budget][0] if start + budget < len(offsets) else len(text)
        piece = text[begin:end].strip()
        if piece:
            pieces.append(piece)
    return pieces


def _split_fence(block: str, budget: int, count: _TokenCounter, tokenizer: Any) -> list[str]:
    """Split a code fence that does not fit into several fences of the same language."""
    lines = block.split("\n")
    opening, closing = lines[0], lines[-1] if len(lines) > 1 else "```"
    inner = "\n".join(lines[1:-1])
    overhead = count(opening) + count(closing)
    room = max(budget - overhead, 8)
    splitter = RecursiveCharacterTextSplitter(
        separators=["\n\n", "\n", " "],
        keep_separator="end",
        chunk_size=_balanced_size(count(inner), room, 0),
        chunk_overlap=0,
        length_function=count,
        strip_whitespace=False,
    )
    out: list[str] = []
    for piece in splitter.split_text(inner):
        piece = piece.strip("\n")
        if not piece.strip():
            continue
        parts = [piece] if count(piece) <= room else _token_split(piece, tokenizer, room)
        out.extend(f"{opening}\n{p}\n{closing}" for p in parts)
    return out


def _balanced_size(total: int, budget: int, overlap: int) -> int:
    """A splitter chunk size that cuts ``total`` tokens into pieces of similar size instead of
    full pieces plus a tiny remainder (greedy packing's leftover makes near-empty chunks)."""
    if total <= budget:
        return budget
    pieces = -(-(total - overlap) // max(budget - overlap, 1))
    per_piece = -(-(total + (pieces - 1) * overlap) // pieces)
    # Headroom: the splitter cannot cut exactly at the ideal point.
    return min(budget, int(per_piece * 1.15) + 1)


def _section_blocks(
    body: str, budget: int, count: _TokenCounter, tokenizer: Any
) -> tuple[list[str], int]:
    """A section's blocks for the splitter (paragraphs and fences, an oversized fence split
    into several, a short lead-in paragraph glued to the fence it introduces) and the size
    of the largest fence block, which the splitter must not cut."""
    blocks: list[str] = []
    largest_fence = 0
    lead_in_open = False  # blocks[-1] is a short paragraph that may introduce a fence
    for block in _split_blocks(body):
        if not block.fence:
            blocks.append(block.text)
            lead_in_open = count(block.text) <= LEAD_IN_TOKENS
            continue
        lead_in = blocks[-1] if lead_in_open else ""
        lead_tokens = count(lead_in)
        if count(block.text) + lead_tokens <= budget:
            pieces = [block.text]
        elif count(block.text) <= budget:
            pieces, lead_in = [block.text], ""
        else:
            pieces = _split_fence(block.text, budget - lead_tokens, count, tokenizer)
        if lead_in:
            pieces[0] = f"{lead_in}\n\n{pieces[0]}"
            blocks.pop()
        blocks.extend(pieces)
        largest_fence = max(largest_fence, *(count(p) for p in pieces))
        lead_in_open = False
    return blocks, largest_fence


def _header_for(title: str, path: list[str]) -> str:
    return " > ".join(p for p in (title, " > ".join(path)) if p)


def _fit_path(title: str, path: list[str], count: _TokenCounter, limit: int) -> list[str]:
    """Drop leading path components (then shorten the last) until the header fits ``limit``."""
    path = list(path)
    while len(path) > 1 and count(_header_for(title, path)) > limit:
        path.pop(0)
    while path and count(_header_for(title, path)) > limit and len(path[-1]) > 10:
        path[-1] = path[-1][: len(path[-1]) * 2 // 3].rstrip() + "…"
    return path


def _chunk_metadata(doc: Document) -> dict[str, Any]:
    meta: dict[str, Any] = {
        k: v
        for k, v in doc.metadata.items()
        if isinstance(v, str | int | float | bool) and k not in _CORE_KEYS
    }
    meta.update(
        title=doc.title,
        url=doc.url,
        source=doc.source,
        topic=str(doc.metadata.get("topic", "")),
        format=str(doc.metadata.get("format", "")),
        doc_hash=doc.hash,
    )
    return meta


def chunker_fingerprint(
    *, chunk_tokens: int, overlap: int, max_tokens: int, model: str = ""
) -> str:
    """A short digest of everything besides the document that decides its chunks."""
    raw = f"{CHUNKER_VERSION}|{chunk_tokens}|{overlap}|{max_tokens}|{model}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def chunk_document(
    doc: Document, tokenizer: Any, *, chunk_tokens: int, overlap: int, max_tokens: int
) -> list[Chunk]:
    """Split a document into chunks whose indexed text (header + text) is at most
    ``min(chunk_tokens, max_tokens - 2)`` word pieces of ``tokenizer``.

    Sections follow the Markdown headings; a fenced code block that fits is never split;
    ids are ``make_chunk_id(doc_id, indexed_text, occurrence)`` so they change exactly when
    what is embedded changes (text, section path or title).
    """
    count = _TokenCounter(tokenizer)
    limit = min(chunk_tokens, max_tokens - SPECIAL_TOKENS)
    title = doc.title.strip()
    sections = _merge_small_sections(split_sections(doc.text), count)

    pieces: list[tuple[str, str]] = []  # (section path, text)
    for sec in sections:
        path = list(sec.path)
        if path and title and path[0].strip().lower() == title.lower():
            path = path[1:]  # the document's own H1 repeats its title
        path = _fit_path(title, path, count, limit // 2)
        section = " > ".join(path)
        header = _header_for(title, path)
        budget = limit - count(header)
        blocks, largest_fence = _section_blocks(sec.body, budget, count, tokenizer)
        if not blocks:
            continue
        step_overlap = min(overlap, budget // 4)
        balanced = _balanced_size(sum(count(b) for b in blocks), budget, step_overlap)
        # +1: the splitter only keeps a piece whole when it is strictly below chunk_size.
        chunk_size = min(max(balanced, largest_fence + 1), budget)
        splitter = RecursiveCharacterTextSplitter(
            separators=_SEPARATORS,
            keep_separator="end",
            chunk_size=chunk_size,
            chunk_overlap=step_overlap,
            length_function=count,
        )
        for text in splitter.split_text(_BLOCK_SEP.join(blocks)):
            text = re.sub(rf"{_BLOCK_SEP}\s*", "\n\n", text).strip()
            if not text:
                continue
            # A long unbroken line (minified code, a URL list) can still overflow.
            parts = [text] if count(text) <= budget else _token_split(text, tokenizer, budget)
            pieces.extend((section, p) for p in parts)

    base_meta = _chunk_metadata(doc)
    base_meta["n_chunks"] = len(pieces)
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for position, (section, text) in enumerate(pieces):
        draft = Chunk(
            id="", doc_id=doc.id, text=text, section=section, position=position, metadata=base_meta
        )
        indexed = draft.indexed_text
        occurrence = seen.get(indexed, 0)
        seen[indexed] = occurrence + 1
        chunks.append(
            Chunk(
                id=make_chunk_id(doc.id, indexed, occurrence),
                doc_id=doc.id,
                text=text,
                section=section,
                position=position,
                metadata=dict(base_meta),
            )
        )
    return chunks
