"""The one request type of the answer path, validated once.

Every front door (HTTP JSON and SSE, the OpenAI-compatible route, Slack, the CLI, the eval)
builds an :class:`AskRequest` and hands it to the pipeline, which validates it with
:func:`validate` into a :class:`ValidRequest` (names resolved, defaults applied) or raises
:class:`~rag.errors.InvalidInputError` / :class:`~rag.errors.UnknownNameError` with one set
of messages. Front doors map those typed errors to their own output (HTTP 4xx, one CLI
line, a Slack reply); none of them re-checks the fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.errors import InvalidInputError
from rag.types import Turn

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.retrieval.filters import NormalizedFilters

ROLES = ("user", "assistant")


@dataclass(frozen=True)
class AskRequest:
    """A question and how to answer it; ``None`` means "the configured default"."""

    question: str
    k: int | None = None
    retriever: str | None = None
    generator: str | None = None
    adapter: str | None = None
    history: Sequence[Turn] = field(default_factory=tuple)
    strict: bool = False
    filters: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ValidRequest:
    """An :class:`AskRequest` after validation: stripped question, concrete names, k set."""

    question: str
    k: int
    retriever: str
    generator: str  # concrete (``auto`` resolved)
    adapter: str | None
    history: tuple[Turn, ...]
    strict: bool
    filters: NormalizedFilters | None
    request: AskRequest | None = None  # what the caller asked, before defaults and resolution


def check_question(question: Any, max_chars: int) -> str:
    """The stripped question, or InvalidInputError when it is not a string, empty or too long."""
    if not isinstance(question, str):
        raise InvalidInputError("the question must be a string")
    text = question.strip()
    if not text:
        raise InvalidInputError("the question is empty")
    if len(text) > max_chars:
        raise InvalidInputError(
            f"the question is {len(text)} characters long; the limit is {max_chars}"
        )
    return text


def check_history(history: Sequence[Any] | None) -> tuple[Turn, ...]:
    """The conversation so far as turns; InvalidInputError for anything else."""
    turns = []
    for turn in history or ():
        if (
            not isinstance(turn, Turn)
            or turn.role not in ROLES
            or not isinstance(turn.content, str)
        ):
            raise InvalidInputError("history must be a list of user/assistant turns with text")
        turns.append(turn)
    return tuple(turns)


def validate(
    request: AskRequest,
    settings: Settings,
    check_adapter: Callable[[str | None, str], str | None],
) -> ValidRequest:
    """``request`` checked field by field, in this order: question, retriever, generator, k,
    filters, history, adapter (``check_adapter(adapter, concrete_generator)`` returns the
    adapter name or None, raising for an unknown one)."""
    from rag.generation.registry import resolve_generator_name
    from rag.retrieval.filters import normalize_filters
    from rag.retrieval.registry import check_retriever_name, validate_k

    question = check_question(request.question, settings.max_question_chars)
    retriever = check_retriever_name(request.retriever or settings.retriever)
    generator = resolve_generator_name(request.generator or settings.generator, settings)
    k = validate_k(request.k, settings)
    filters = normalize_filters(dict(request.filters) if request.filters else None)
    history = check_history(request.history)
    if not isinstance(request.strict, bool):
        raise InvalidInputError("strict must be true or false")
    adapter = check_adapter(request.adapter or None, generator)
    return ValidRequest(
        question=question,
        k=k,
        retriever=retriever,
        generator=generator,
        adapter=adapter,
        history=history,
        strict=request.strict,
        filters=filters,
        request=request,
    )
