"""When the answer is "the corpus does not cover this": the one place that decides.

Two decisions, both visible stages of the pipeline (rag.pipeline):

* :func:`decide_on_retrieval` — before generating: nothing was retrieved, the best
  query-to-hit similarity is below the threshold, or a rare specific question term is
  missing from the context (the signals come from rag.coverage; the rule from settings,
  calibrated on the dev split by ``mlrag eval calibrate``, which applies this same rule).
* :func:`decide_on_answer` — after generating and verifying (rag.verify): the generator
  declined (its answer is the abstention sentence or a close variant, see :func:`is_decline`),
  every sentence stated invented specifics, the best remaining sentence is not supported by
  the context (below ``answer_support_floor``), the question asks for a kind of fact (a
  default) that no cited block states (rag.asked), the cited blocks lack a rare term of the
  question that the context names (``answer_term_max_df``), or a strict answer has nothing left.

Generators never decide to abstain themselves; they may only decline in words, which this
module recognises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.coverage import CoverageSignal

ABSTAIN_TEXT = "The corpus does not cover this."

# Ways models phrase "not in the context" (lower-case, after whitespace normalisation).
_DECLINE_PATTERNS = re.compile(
    r"(the )?(corpus|context|provided (context|documents?|sources?|passages?)|documents?|sources?"
    r"|passages?)"
    r" (does|do|did) not (cover|contain|include|mention|provide|say|state|specify|answer|address)"
    # "The passage states that … but it does not mention Windows": the prompt says "passages"
    r"|\bpassages?\b[^.]*\b(it|they) (does|do|did) not (mention|say|state|specify)"
    r"|not covered (in|by)|is not covered|isn't covered|no (relevant )?information (about|on|in)"
    r"|(cannot|can't|can not|unable to) (answer|find)|i (do not|don't) know"
    r"|^not covered|there is no information"
)


def is_decline(text: str) -> bool:
    """Whether ``text`` is (essentially) the abstention sentence or a close variant."""
    normalised = " ".join(text.lower().replace("’", "'").split())
    if not normalised:
        return True
    if normalised.rstrip(".") == ABSTAIN_TEXT.lower().rstrip("."):
        return True
    # Only a short reply counts: a long answer that mentions a gap still answers something.
    head = normalised[:300]
    return (
        len(normalised) <= 300
        and bool(_DECLINE_PATTERNS.search(head))
        or normalised.startswith(ABSTAIN_TEXT.lower().rstrip("."))
    )


# The name the rest of the project used before this module owned it.
is_abstention = is_decline


@dataclass(frozen=True)
class Decision:
    """Whether to abstain, and why (``reason`` is "" when answering)."""

    abstain: bool
    reason: str = ""
    missing_terms: tuple[str, ...] = ()

    @classmethod
    def answer(cls) -> Decision:
        """Go on and answer."""
        return cls(False)


ANSWER = Decision.answer()


@dataclass(frozen=True)
class AbstentionRule:
    """The retrieval-level rule: answer only when the best similarity reaches ``threshold``
    and no specific question term found in at most ``term_max_df`` corpus chunks is missing
    from the context (``term_max_df < 0`` turns the term check off)."""

    threshold: float
    term_max_df: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AbstentionRule:
        """The configured rule (``abstain_threshold``, ``abstain_term_max_df``)."""
        return cls(settings.abstain_threshold, settings.abstain_term_max_df)

    def missing_terms(self, signal: CoverageSignal) -> tuple[str, ...]:
        """The rare specific terms of the question the context lacks."""
        if self.term_max_df < 0:
            return ()
        return tuple(word for word, df in signal.uncovered if df <= self.term_max_df)

    def abstains(self, similarity: float, term_missing: bool = False) -> bool:
        """The rule on its two inputs (also used by ``eval calibrate`` on cached signals)."""
        return similarity < self.threshold or term_missing

    def covers(self, signal: CoverageSignal) -> bool:
        """Whether the context covers the question by this rule."""
        return not self.abstains(signal.similarity, bool(self.missing_terms(signal)))


def decide_on_retrieval(
    signal: CoverageSignal | None, rule: AbstentionRule, n_hits: int
) -> Decision:
    """Abstain before generating when nothing relevant was retrieved."""
    if n_hits == 0 or signal is None:
        return Decision(True, "no_hits")
    missing = rule.missing_terms(signal)
    if signal.similarity < rule.threshold:
        return Decision(True, "low_similarity", missing)
    if missing:
        return Decision(True, "missing_terms", missing)
    return ANSWER


def decide_on_answer(
    raw_text: str,
    declined: bool,
    support: Sequence[float],
    floor: float,
    strict: bool = False,
    strict_text: str = "",
    invented: Sequence[str] = (),
    cites: bool = True,
    unstated: Sequence[str] = (),
    missing_terms: Sequence[str] = (),
) -> Decision:
    """Abstain after generating when the generator declined; when no sentence is left after
    verification (rag.verify dropped the ones stating invented specifics); when even the best
    remaining sentence's support is below ``floor`` (calibrated on the dev split); when no
    sentence cites a block (none is supported by any); when the question asks for a kind of
    fact (a default, the version that added something) that no cited block states
    (``unstated``, rag.asked); when the blocks it cites lack a rare specific term of the
    question (``missing_terms``: the answer is about something else); or when ``strict``
    drops every unsupported sentence and nothing is left."""
    if declined or is_decline(raw_text):
        return Decision(True, "declined")
    if not support:
        return Decision(True, "invented" if invented else "unsupported")
    if max(support) < floor:
        return Decision(True, "unsupported")
    if not cites:
        # rag.verify cites every sentence some block supports: an answer left with no citation
        # has no supported sentence, and is never shown as an answer.
        return Decision(True, "uncited")
    if unstated:
        # "What's the default batch size?" answered "64 [1]" from an example that sets it.
        return Decision(True, "unstated")
    if missing_terms:
        return Decision(True, "missing_terms", tuple(missing_terms))
    if strict and not strict_text.strip():
        return Decision(True, "unsupported")
    return ANSWER
