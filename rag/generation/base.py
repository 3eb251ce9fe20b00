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


def model_answer(
    generator: str,
    question: str,
    hits: list[Hit],
    text: str,
    adapter: str | None,
    timings_ms: dict[str, float],
) -> Answer:
    """A language model's raw answer, before the pipeline cites and verifies it (a decline in
    words is flagged here; rag.abstention makes the decision)."""
    from rag.abstention import is_decline

    return Answer(
        text=text,
        citations=[],  # the pipeline turns [n] markers into citations
        abstained=is_decline(text),
        generator=generator,
        retriever=hits[0].retriever if hits else "",
        adapter=adapter,
        timings_ms=timings_ms,
        question=question,
        hits=list(hits),
    )


def no_context_answer(generator: str, question: str, adapter: str | None) -> Answer:
    """The answer to a question with nothing retrieved: no model is asked."""
    from rag.abstention import ABSTAIN_TEXT

    return model_answer(generator, question, [], ABSTAIN_TEXT, adapter, {"generate": 0.0})
