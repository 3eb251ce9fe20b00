"""The retriever interface shared by every retrieval backend."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from rag.types import Hit

# Metadata filters: {"topic": "pytorch"} or {"topic": ["pytorch", "numpy"], "source": "..."}.
Filters = dict[str, Any]


@runtime_checkable
class Retriever(Protocol):
    """Finds the chunks most relevant to a query."""

    name: str

    def search(self, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        """Up to ``k`` hits, best first, ranks starting at 1."""
        ...
