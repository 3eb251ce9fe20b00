"""``GET /v1/sources``: the ingested documents with their chunk counts."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter

from api.deps import ApiKey, ServicesDep

router = APIRouter(prefix="/v1", tags=["sources"], dependencies=[ApiKey])


@router.get("/sources", summary="Ingested documents")
async def list_sources(services: ServicesDep) -> dict[str, Any]:
    """One entry per document: doc_id, title, source, url, topic, chunks."""
    rag = services.require_rag()
    documents = await anyio.to_thread.run_sync(rag.document_summaries)
    return {
        "documents": documents,
        "total_documents": len(documents),
        "total_chunks": sum(d.get("chunks", 0) for d in documents),
    }
