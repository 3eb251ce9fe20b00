"""Contamination check: a training file must share no question and no evidence quote with the
eval gold set, or the fine-tuned model's eval scores would measure memorisation.

Three kinds of overlap are refused:

* the same question after normalisation (case, Unicode form, punctuation, whitespace);
* a near-duplicate question: token Jaccard similarity ≥ 0.8 between the two questions' word
  sets (catches re-wordings such as a changed article or word order);
* a shared evidence quote: equal after normalisation, or one containing the other (a
  training item quoting the same sentence teaches that very answer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from finetune.dataset import load_qa_items
from rag.config import PROJECT_ROOT
from rag.errors import InvalidInputError
from rag.qa import QAItem, normalize_for_match

DEFAULT_GOLD = PROJECT_ROOT / "eval" / "gold" / "gold.jsonl"
NEAR_DUPLICATE_JACCARD = 0.8
# Shorter quotes are common table cells or phrases ("learning rate"): containment of those
# says nothing; equality still counts.
MIN_CONTAINED_QUOTE_CHARS = 20
_WORD = re.compile(r"[a-z0-9]+")


def normalize_question(question: str) -> str:
    """Lower case, NFKC, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", question).lower()
    return " ".join(_WORD.findall(text))


def question_tokens(question: str) -> set[str]:
    """The set of word tokens of a question."""
    return set(normalize_question(question).split())


def token_jaccard(a: str, b: str) -> float:
    """|A∩B| / |A∪B| of the two questions' word sets (0 when both are empty)."""
    ta, tb = question_tokens(a), question_tokens(b)
    union = ta | tb
    return len(ta & tb) / len(union) if union else 0.0


@dataclass(frozen=True)
class Overlap:
    """One training item that overlaps one gold item, and why."""

    train_id: str
    gold_id: str
    reason: str  # "same question", "near-duplicate question (jaccard 0.83)", "shared evidence"

    def __str__(self) -> str:
        return f"{self.train_id} ~ {self.gold_id}: {self.reason}"


def _quotes_overlap(a: str, b: str) -> bool:
    if a == b:
        return True
    shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
    return len(shorter) >= MIN_CONTAINED_QUOTE_CHARS and shorter in longer


def find_overlaps(
    train: Sequence[QAItem],
    gold: Sequence[QAItem],
    jaccard: float = NEAR_DUPLICATE_JACCARD,
) -> list[Overlap]:
    """Every (training item, gold item) pair that shares a question or an evidence quote."""
    gold_questions = [
        (g.id, normalize_question(g.question), question_tokens(g.question)) for g in gold
    ]
    gold_quotes = [(g.id, normalize_for_match(q)) for g in gold for q in g.evidence]
    found: list[Overlap] = []
    for item in train:
        normal = normalize_question(item.question)
        tokens = set(normal.split())
        for gold_id, gold_normal, gold_tokens in gold_questions:
            if normal == gold_normal:
                found.append(Overlap(item.id, gold_id, "same question"))
                continue
            union = tokens | gold_tokens
            score = len(tokens & gold_tokens) / len(union) if union else 0.0
            if score >= jaccard:
                found.append(
                    Overlap(item.id, gold_id, f"near-duplicate question (jaccard {score:.2f})")
                )
        quotes = {normalize_for_match(q) for q in item.evidence}
        reported: set[str] = set()
        for gold_id, gold_quote in gold_quotes:
            if gold_id not in reported and any(_quotes_overlap(q, gold_quote) for q in quotes if q):
                found.append(Overlap(item.id, gold_id, "shared evidence"))
                reported.add(gold_id)
    return found


def check_no_overlap(
    train: Sequence[QAItem], gold: Sequence[QAItem], origin: str = "training file"
) -> None:
    """Raise InvalidInputError listing the offending ids when ``train`` overlaps ``gold``."""
    overlaps = find_overlaps(train, gold)
    if not overlaps:
        return
    ids = sorted({o.train_id for o in overlaps})
    shown = "; ".join(str(o) for o in overlaps[:10])
    more = f"; … {len(overlaps) - 10} more" if len(overlaps) > 10 else ""
    raise InvalidInputError(
        f"{origin} overlaps the eval gold set ({len(ids)} item(s): {', '.join(ids)}): {shown}{more}"
    )


def check_file(data: Path, gold: Path = DEFAULT_GOLD) -> list[QAItem]:
    """Load and validate a training file, refuse it if it overlaps the gold file; returns
    its items."""
    items = load_qa_items(data)
    if not Path(gold).is_file():
        raise InvalidInputError(f"gold set not found: {gold} (pass --gold)")
    check_no_overlap(items, load_qa_items(gold), origin=str(data))
    return items
