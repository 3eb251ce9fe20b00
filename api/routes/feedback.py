"""Thumbs up/down on answers: ``POST /v1/feedback`` appends, ``GET /v1/feedback`` (admin) reads."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Query, Request, status

from api.deps import AdminKey, ApiKey, ServicesDep
from api.schemas import FeedbackIn

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post(
    "/feedback",
    status_code=status.HTTP_201_CREATED,
    dependencies=[ApiKey],
    summary="Rate an answer",
)
async def post_feedback(
    body: FeedbackIn, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Store one rating (append-only JSONL in the data dir)."""
    record = body.model_dump()
    record["feedback_request_id"] = getattr(request.state, "request_id", None)
    entry = await anyio.to_thread.run_sync(services.feedback.append, record)
    return {"id": entry["id"], "status": "stored"}


@router.get("/feedback", dependencies=[AdminKey], summary="Stored feedback (admin)")
async def get_feedback(
    services: ServicesDep, limit: int = Query(1000, ge=1, le=100_000)
) -> dict[str, Any]:
    """The newest ``limit`` ratings, oldest first."""
    items = await anyio.to_thread.run_sync(services.feedback.read, limit)
    return {"items": items, "count": len(items)}
