"""Metadata filters shared by every retriever.

A filter maps a chunk field to one value or a list of accepted values, e.g.
``{"topic": "pytorch"}`` or ``{"topic": ["pytorch", "numpy"], "source": "..."}``. Keys are
combined with AND, the values of one key with OR.
"""

from __future__ import annotations

from typing import Any

from rag.errors import InvalidInputError
from rag.retrieval.base import Filters
from rag.types import Chunk

# Chunk fields a caller may filter on (all are stored as Chroma metadata).
FILTER_KEYS: tuple[str, ...] = ("topic", "source", "doc_id")

NormalizedFilters = dict[str, tuple[str, ...]]


def normalize_filters(filters: Filters | None) -> NormalizedFilters | None:
    """Validate ``filters`` and return ``{key: (accepted values, ...)}``; None when empty.

    Raises :class:`InvalidInputError` for unknown keys and for values that are not a string or
    a non-empty list of strings.
    """
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise InvalidInputError(f"filters must be an object, got {type(filters).__name__}")
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise InvalidInputError(
            f"unknown filter key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(FILTER_KEYS)}"
        )
    normalized: NormalizedFilters = {}
    for key, value in filters.items():
        values = [value] if isinstance(value, str) else value
        if (
            not isinstance(values, list | tuple)
            or not values
            or not all(isinstance(v, str) for v in values)
        ):
            raise InvalidInputError(
                f"filter {key!r} must be a string or a non-empty list of strings, got {value!r}"
            )
        normalized[key] = tuple(dict.fromkeys(values))  # de-duplicated, order kept
    return normalized


def to_chroma_where(filters: NormalizedFilters | None) -> dict[str, Any] | None:
    """The Chroma ``where`` clause equivalent to normalised ``filters``."""
    if not filters:
        return None
    clauses: list[dict[str, Any]] = [
        {key: values[0]} if len(values) == 1 else {key: {"$in": list(values)}}
        for key, values in filters.items()
    ]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def chunk_field(chunk: Chunk, key: str) -> str:
    """The value of a filterable field of ``chunk``."""
    if key == "doc_id":
        return chunk.doc_id
    return str(chunk.metadata.get(key, ""))


def matches(chunk: Chunk, filters: NormalizedFilters | None) -> bool:
    """Whether ``chunk`` passes normalised ``filters``."""
    if not filters:
        return True
    return all(chunk_field(chunk, key) in values for key, values in filters.items())
