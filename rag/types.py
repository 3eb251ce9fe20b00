"""Core value types shared by every package. Frozen dataclasses: cheap, hashable, and easy
to turn into JSON with :func:`dataclasses.asdict` (see ``to_dict`` methods)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


def content_hash(text: str) -> str:
    """Stable hex digest of a text (sha256), used for document and chunk ids."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Document:
    """A loaded, cleaned source document.

    ``id`` is stable across runs for the same source (derived from its path or URL), so a
    changed document replaces exactly its old chunks.
    """

    id: str
    source: str  # path relative to the project, or URL
    title: str
    url: str  # clickable address shown in citations ("" when there is none)
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)  # topic, format, license, ...

    @property
    def hash(self) -> str:
        return content_hash(self.text)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, small enough for the embedding model's window.

    ``text`` is the chunk as shown to users and generators; ``header`` (title > section path)
    is prepended only to the text that is indexed (:attr:`indexed_text`).
    """

    id: str
    doc_id: str
    text: str
    section: str = ""  # section path, "A > B > C"
    position: int = 0  # index of the chunk within its document
    metadata: dict[str, Any] = field(default_factory=dict)  # title, url, source, topic, ...

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", ""))

    @property
    def url(self) -> str:
        return str(self.metadata.get("url", ""))

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def topic(self) -> str:
        return str(self.metadata.get("topic", ""))

    @property
    def header(self) -> str:
        parts = [p for p in (self.title, self.section) if p]
        return " > ".join(parts)

    @property
    def indexed_text(self) -> str:
        """The text that both the dense and the lexical index see: header, blank line, text."""
        return f"{self.header}\n\n{self.text}" if self.header else self.text


def make_chunk_id(doc_id: str, text: str, occurrence: int = 0) -> str:
    """Chunk id from its document id and content; ``occurrence`` separates identical texts
    within one document. Same content ⇒ same id, so re-ingest is a no-op."""
    digest = content_hash(f"{doc_id}\x00{occurrence}\x00{text}")[:24]
    return f"{doc_id}#{digest}"


RetrieverName = str
GeneratorName = str


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its score (higher is better) and 1-based rank."""

    chunk: Chunk
    score: float
    rank: int
    retriever: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the CLI and the API."""
        return {
            "chunk_id": self.chunk.id,
            "doc_id": self.chunk.doc_id,
            "text": self.chunk.text,
            "source": self.chunk.source,
            "title": self.chunk.title,
            "url": self.chunk.url,
            "section": self.chunk.section,
            "topic": self.chunk.topic,
            "score": self.score,
            "rank": self.rank,
            "retriever": self.retriever,
        }


@dataclass(frozen=True)
class Citation:
    """A numbered source of an answer: ``n`` is the ``[n]`` marker in the answer text and
    ``quote`` the exact sentence of the chunk that supports the claim (for a block cited by
    two sentences, the support of each: one verbatim span, or two joined by " … ")."""

    n: int
    chunk_id: str
    source: str
    title: str
    url: str
    quote: str
    section: str = ""


@dataclass(frozen=True)
class Answer:
    """The result of answering a question."""

    text: str
    citations: list[Citation]
    abstained: bool
    generator: str
    retriever: str
    adapter: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)  # retrieve, generate, total
    question: str = ""
    query: str = ""  # the standalone query retrieval and the generator saw (condensed follow-up)
    unsupported: list[str] = field(default_factory=list)  # answer sentences without support
    removed_citations: int = 0  # [n] markers that pointed at nothing and were removed
    support: list[float] = field(default_factory=list)  # support score per answer sentence
    hits: list[Hit] = field(default_factory=list)  # context the answer was generated from
    cached: bool = False  # served from the answer cache (rag.answer_cache)

    def to_dict(self, include_hits: bool = False) -> dict[str, Any]:
        """The JSON shape used by the CLI and the API."""
        data = asdict(self)
        data.pop("hits")
        if include_hits:
            data["hits"] = [h.to_dict() for h in self.hits]
        return data


@dataclass(frozen=True)
class TokenEvent:
    """A piece of streamed answer text."""

    text: str
    type: Literal["token"] = "token"


@dataclass(frozen=True)
class AnswerEvent:
    """The final streamed event: the complete, post-processed answer."""

    answer: Answer
    type: Literal["answer"] = "answer"


StreamEvent = TokenEvent | AnswerEvent


@dataclass(frozen=True)
class Turn:
    """One message of a conversation history."""

    role: Literal["user", "assistant"]
    content: str
