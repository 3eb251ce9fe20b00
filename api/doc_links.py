"""Clickable citations for documents without a public URL.

A citation whose chunk has no public ``url`` (the user's own page, local files) links to the
service's document view instead: ``<base>/documents/<doc_id>#chunk-<position>``. Every route
that returns citations goes through :func:`link_citations`, so the rule lives in one place.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

from starlette.requests import Request

from rag.config import Settings
from rag.types import Answer, Citation, Hit

DOCUMENTS_PATH = "/documents/"


def chunk_anchor(position: int) -> str:
    """The HTML id of a chunk's section on the document page."""
    return f"chunk-{position}"


def document_path(doc_id: str, position: int | None = None) -> str:
    """The site-relative address of a document's page, optionally at one chunk.

    The id is fully percent-encoded: ids contain ``:``, ``/`` and possibly ``?`` or ``#``
    (URL sources), and ``//`` in a path is merged by some proxies."""
    path = DOCUMENTS_PATH + quote(doc_id, safe="")
    return path if position is None else f"{path}#{chunk_anchor(position)}"


def public_base_url(settings: Settings) -> str:
    """The externally visible base URL (no trailing slash): ``public_url`` when set, else
    ``http://{host}:{port}`` (only right when clients reach the bind address directly)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = f"[{settings.host}]" if ":" in settings.host else settings.host  # IPv6 literal
    return f"http://{host}:{settings.port}"


def request_base_url(request: Request, settings: Settings) -> str:
    """The base URL for absolute links in a response: ``public_url`` when set, else the
    address this client used to reach the service (its Host header)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def _doc_id_of(chunk_id: str) -> str | None:
    """The document id encoded in a chunk id (``<doc_id>#<digest>``, see make_chunk_id)."""
    doc_id, sep, digest = chunk_id.rpartition("#")
    return doc_id if sep and doc_id and digest else None


def citation_link(citation: Citation, hits_by_chunk: dict[str, Hit], base: str = "") -> str:
    """The citation's public URL, or a link to its chunk on the document page ("" when the
    citation names no known document)."""
    if citation.url:
        return citation.url
    hit = hits_by_chunk.get(citation.chunk_id)
    if hit is not None:
        return base + document_path(hit.chunk.doc_id, hit.chunk.position)
    # Without the context hit the position is unknown: link to the top of the document.
    doc_id = _doc_id_of(citation.chunk_id)
    return base + document_path(doc_id) if doc_id else ""


def link_citations(answer: Answer, base: str = "") -> Answer:
    """``answer`` with every URL-less citation pointing at the document view; ``base`` is ""
    for site-relative links or an absolute base URL (see :func:`public_base_url`)."""
    if not any(not c.url for c in answer.citations):
        return answer
    hits_by_chunk = {hit.chunk.id: hit for hit in answer.hits}
    citations = [
        c if c.url else dataclasses.replace(c, url=citation_link(c, hits_by_chunk, base))
        for c in answer.citations
    ]
    return dataclasses.replace(answer, citations=citations)
