"""Request and response bodies of the JSON API (pydantic models: they are the OpenAPI docs).

Limits that depend on settings (question length, largest ``k``) are checked in the routes,
because a pydantic model's constraints are fixed at import time.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A URL carries no whitespace or control characters (they must be percent-encoded).
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")

Filters = dict[str, str | int | float | bool | list[str | int | float | bool]]


class StrictModel(BaseModel):
    """A request body that rejects unknown fields (typos should fail loudly)."""

    model_config = ConfigDict(extra="forbid")


class SearchRequest(StrictModel):
    query: str = Field(..., min_length=1, description="What to search for.")
    k: int | None = Field(None, ge=1, description="Number of hits (default: settings.k).")
    retriever: str | None = Field(
        None, description="dense, bm25, hybrid, ... (default: settings.retriever)."
    )
    filters: Filters | None = Field(
        None, description='Metadata filters, e.g. {"topic": "pytorch"}.'
    )


class HitOut(BaseModel):
    chunk_id: str
    doc_id: str
    text: str
    source: str
    title: str
    url: str
    section: str
    topic: str
    score: float
    rank: int
    retriever: str


class SearchResponse(BaseModel):
    hits: list[HitOut]
    retriever: str
    timings_ms: dict[str, float] = Field(default_factory=dict)


class TurnIn(StrictModel):
    role: Literal["user", "assistant"]
    content: str = Field(..., max_length=20_000)


class AskRequest(StrictModel):
    question: str = Field(..., min_length=1, description="The question.")
    k: int | None = Field(None, ge=1, description="Context chunks (default: settings.k).")
    retriever: str | None = Field(None, description="Retriever name (default: settings.retriever).")
    generator: str | None = Field(
        None, description="auto, claude, local, extractive (default: settings.generator)."
    )
    adapter: str | None = Field(None, description="LoRA adapter name for the local generator.")
    history: list[TurnIn] = Field(
        default_factory=list, max_length=50, description="Earlier turns, oldest first."
    )
    strict: bool = Field(False, description="Drop answer sentences without support.")
    filters: Filters | None = Field(None, description="Metadata filters for retrieval.")
    stream: bool = Field(
        False, description="Answer as Server-Sent Events (also: Accept: text/event-stream)."
    )


class CitationOut(BaseModel):
    n: int
    chunk_id: str
    source: str
    title: str
    url: str
    quote: str
    section: str = ""


class AnswerOut(BaseModel):
    text: str
    citations: list[CitationOut]
    abstained: bool
    generator: str
    retriever: str
    adapter: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    question: str = ""
    unsupported: list[str] = Field(default_factory=list)
    removed_citations: int = 0
    support: list[float] = Field(default_factory=list)


class ConfigOut(BaseModel):
    retrievers: list[str]
    generators: list[str]
    adapters: list[str]
    openai_adapters: list[str] = Field(
        default_factory=list, description="Models the inference server lists ('openai' adapters)."
    )
    default_retriever: str
    default_generator: str
    k: int
    max_k: int
    max_question_chars: int
    ready: bool


class FeedbackIn(StrictModel):
    rating: Literal["up", "down"]
    question: str = Field(..., min_length=1, max_length=20_000)
    answer: str = Field("", max_length=50_000)
    request_id: str | None = Field(None, max_length=100)
    generator: str | None = Field(None, max_length=100)
    retriever: str | None = Field(None, max_length=100)
    citations: list[str] = Field(
        default_factory=list, max_length=50, description="Cited URLs or chunk ids."
    )
    comment: str | None = Field(None, max_length=2000)


class SourceIn(StrictModel):
    kind: Literal["path", "url"]
    location: str = Field(..., min_length=1, max_length=2048)
    title: str | None = Field(None, max_length=500)
    topic: str = Field("", max_length=100)
    format: str | None = Field(None, max_length=20)
    depth: int = Field(0, ge=0, le=2, description="Link depth to follow from a URL.")

    @model_validator(mode="after")
    def _url_parses(self) -> SourceIn:
        # A URL that urllib cannot split (``http://[::1/``, a bad port) is a malformed request
        # (422) here, not a ValueError deep in the URL checks. Which schemes and hosts are
        # allowed is decided later, by api.ingest_safety (400).
        if self.kind == "url":
            check_url_syntax(self.location)
        return self


def check_url_syntax(url: str) -> None:
    """Raise ``ValueError`` when ``url`` cannot be parsed (bad brackets, port, characters)."""
    if _URL_FORBIDDEN.search(url):
        raise ValueError("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        _ = (parts.hostname, parts.port)  # parsing the host and the port is the check
    except ValueError as exc:
        raise ValueError(f"malformed URL: {exc}") from None


class IngestRequest(StrictModel):
    sources: list[SourceIn] = Field(..., min_length=1, max_length=100)
    prune: bool = Field(False, description="Remove documents no longer in the given sources.")


class IngestJobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    sources: list[dict[str, Any]] = Field(default_factory=list)


# --- OpenAI-compatible chat completions ------------------------------------------------------
class ChatContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ... are accepted and ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ChatContentPart] | None = None


class ChatCompletionRequest(BaseModel):
    # OpenAI clients send many optional fields (temperature, top_p, user, ...): accept them.
    model_config = ConfigDict(extra="allow")
    model: str = Field(
        "mlrag",
        description="'mlrag' (default generator), or a generator name, optionally with ':adapter' (local:my-adapter).",
    )
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=100)
    stream: bool = False
