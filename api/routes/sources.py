"""``GET /v1/sources``: the ingested documents with their chunk counts;
``DELETE /v1/sources/{doc_id}`` (admin): remove one document from the index."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter

from api.deps import AdminKey, ApiKey, ServicesDep
from api.errors import ApiError
from api.source_removal import remove_document

router = APIRouter(prefix="/v1", tags=["sources"])


@router.get("/sources", summary="Ingested documents", dependencies=[ApiKey])
async def list_sources(services: ServicesDep) -> dict[str, Any]:
    """One entry per document: doc_id, title, source, url, topic, chunks."""
    rag = services.require_rag()
    documents = await anyio.to_thread.run_sync(rag.document_summaries)
    return {
        "documents": documents,
        "total_documents": len(documents),
        "total_chunks": sum(d.get("chunks", 0) for d in documents),
    }


@router.delete(
    "/sources/{doc_id:path}",
    summary="Remove a document from the index (admin)",
    dependencies=[AdminKey],
    responses={404: {}, 409: {}},
)
async def delete_source(doc_id: str, services: ServicesDep) -> dict[str, Any]:
    """Delete every chunk of the document ``doc_id`` (as listed by ``GET /v1/sources``; ids
    contain ``:`` and ``/``, which may be sent as they are or percent-encoded). 404 when no
    chunk has that id; 409 while an ingest is running. A later ingest of a source that still
    produces the document adds it back."""
    rag = services.require_rag()
    removed = await anyio.to_thread.run_sync(remove_document, services.settings, rag.store, doc_id)
    if removed == 0:
        raise ApiError(404, "not_found", f"no document {doc_id!r} in the index")
    return {"doc_id": doc_id, "chunks_removed": removed, "status": "removed"}
