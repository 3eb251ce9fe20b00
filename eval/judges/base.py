"""The judge interface and the factory that builds one by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rag.errors import UnknownNameError

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder

JUDGE_NAMES: tuple[str, ...] = ("offline", "nli", "claude")

# (answer sentence, context passages): the passages are the chunks the sentence cites.
JudgePair = tuple[str, Sequence[str]]


@runtime_checkable
class Judge(Protocol):
    """Scores how well context passages support answer sentences."""

    name: str
    threshold: float  # support at or above it counts as "supported"

    def support(self, pairs: Sequence[JudgePair]) -> list[float]:
        """Support in [0, 1] of each sentence by its passages, in input order."""
        ...

    def describe(self) -> str:
        """One line for reports: the judge, its model and threshold."""
        ...


def supported(judge: Judge, pairs: Sequence[JudgePair]) -> list[bool]:
    """Whether each sentence is supported by its passages according to ``judge``."""
    return [score >= judge.threshold for score in judge.support(pairs)]


def build_judge(
    name: str,
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    nli_model: str | None = None,
    client: Any | None = None,
) -> Judge:
    """The judge called ``name``: ``offline`` (embedding + lexical support, as rag.grounding),
    ``nli`` (a CrossEncoder NLI model, path or hub name in ``nli_model``) or ``claude``
    (claim extraction and verification; ``client`` replaces the Anthropic client)."""
    if name == "offline":
        from eval.judges.offline import OfflineJudge
        from rag.embeddings import Embedder

        return OfflineJudge(
            embedder or Embedder.from_settings(settings), settings.support_threshold
        )
    if name == "nli":
        from eval.judges.nli import NLIJudge

        if not nli_model:
            raise UnknownNameError(
                "the nli judge needs --nli-model (a CrossEncoder path or hub name)"
            )
        return NLIJudge(nli_model, threads=settings.effective_threads())
    if name == "claude":
        from eval.judges.claude import ClaudeJudge

        return ClaudeJudge.from_settings(settings, client=client)
    raise UnknownNameError(f"unknown judge {name!r}; choose one of: {', '.join(JUDGE_NAMES)}")
