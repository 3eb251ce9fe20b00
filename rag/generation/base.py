"""The generator interface shared by every answer backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from rag.types import Answer, Hit, StreamEvent, Turn


@runtime_checkable
class Generator(Protocol):
    """Writes an answer to a question from retrieved context."""

    name: str

    def generate(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Answer:
        """A complete answer (citations not yet post-processed by the pipeline)."""
        ...

    def stream(
        self,
        question: str,
        hits: list[Hit],
        history: list[Turn] | None = None,
        adapter: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Token events, then exactly one final answer event; raises on failure mid-answer."""
        ...
