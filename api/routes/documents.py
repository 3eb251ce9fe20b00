"""One ingested document, whole: ``GET /v1/documents/{doc_id}`` (JSON) and
``GET /documents/{doc_id}`` (a readable page with one ``#chunk-<position>`` anchor per chunk).

Citations of documents without a public URL link here (see :mod:`api.doc_links`). Document
ids contain ``:`` and ``/`` (``file:machine-learning.txt``, ``url:https://...``), so both
routes take the rest of the path; a percent-encoded id works too.

Auth: both routes follow the rule of the ``/v1`` read routes (an API key when keys are
configured). ``/`` is public because it is a shell without corpus content; this page shows
corpus text, so it is not: with API keys configured, a browser following a citation link
gets 401 unless a proxy in front adds the ``Authorization`` header.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.deps import ApiKey, ServicesDep
from api.doc_links import chunk_anchor
from api.errors import ApiError
from rag.types import Chunk

router = APIRouter(dependencies=[ApiKey])

# The page runs no script and loads nothing but the chat page's stylesheet.
_PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class StoredDocument:
    """A document rebuilt from its stored chunks (ordered by position)."""

    doc_id: str
    title: str
    source: str
    url: str
    topic: str
    chunks: list[Chunk]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/documents/{doc_id}``."""
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "topic": self.topic,
            "chunks": [
                {
                    "chunk_id": c.id,
                    "position": c.position,
                    "section": c.section,
                    "text": c.text,
                }
                for c in self.chunks
            ],
        }


def read_document(store: Any, doc_id: str) -> StoredDocument | None:
    """The document ``doc_id`` from the chunk store, or None when it has no chunks."""
    if not doc_id:
        return None
    chunks = sorted(store.iter_chunks(where={"doc_id": doc_id}), key=lambda c: (c.position, c.id))
    if not chunks:
        return None
    first = chunks[0]  # document fields are copied into every chunk's metadata at ingest
    return StoredDocument(
        doc_id=doc_id,
        title=first.title,
        source=first.source,
        url=first.url,
        topic=first.topic,
        chunks=chunks,
    )


async def _load(services: Any, doc_id: str) -> StoredDocument:
    rag = services.require_rag()
    document = await anyio.to_thread.run_sync(partial(read_document, rag.store, doc_id))
    if document is None:
        raise ApiError(404, "not_found", f"no document with id {doc_id!r}")
    return document


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _is_web_url(url: str) -> bool:
    # Only http(s) becomes a link: a stored "javascript:" URL must not become clickable.
    return url.lower().startswith(("https://", "http://"))


def render_document_page(document: StoredDocument) -> str:
    """The document as a standalone HTML page (every stored value escaped)."""
    title = document.title or document.source or document.doc_id
    links = ['<a href="/">Ask a question</a>']
    if _is_web_url(document.url):
        links.append(
            f'<a href="{_e(document.url)}" rel="noopener noreferrer">Original page</a>'
            f' <span class="url">{_e(document.url)}</span>'
        )
    meta = [document.source or document.doc_id]
    if document.topic:
        meta.append(f"topic: {document.topic}")
    meta.append(f"{len(document.chunks)} part{'s' if len(document.chunks) != 1 else ''}")
    sections = []
    for chunk in document.chunks:
        anchor = chunk_anchor(chunk.position)
        heading = chunk.section or f"Part {chunk.position + 1}"
        sections.append(
            f'    <section class="turn chunk" id="{anchor}" aria-labelledby="{anchor}-h">\n'
            f'      <h2 class="q" id="{anchor}-h">{_e(heading)} '
            f'<a href="#{anchor}" class="marker" aria-label="Link to this part">#</a></h2>\n'
            f'      <div class="answer">{_e(chunk.text)}</div>\n'
            f"    </section>"
        )
    body = "\n".join(sections)
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{_e(title)} — mlrag</title>
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <header>
    <h1>{_e(title)}</h1>
    <p class="tagline">{_e(" · ".join(meta))}</p>
    <p>{" · ".join(links)}</p>
  </header>
  <main>
{body}
  </main>
</body>
</html>
"""


@router.get(
    "/v1/documents/{doc_id:path}",
    tags=["sources"],
    summary="One ingested document with its chunks",
    responses={404: {"description": "No document with this id"}},
)
async def get_document(doc_id: str, services: ServicesDep) -> dict[str, Any]:
    """``{doc_id, title, source, url, topic, chunks: [{chunk_id, position, section, text}]}``,
    chunks in document order."""
    return (await _load(services, doc_id)).to_dict()


@router.get("/documents/{doc_id:path}", include_in_schema=False)
async def document_page(doc_id: str, services: ServicesDep) -> HTMLResponse:
    """The document as a readable page; ``#chunk-<position>`` jumps to one chunk."""
    document = await _load(services, doc_id)
    return HTMLResponse(
        render_document_page(document),
        headers={"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"},
    )
