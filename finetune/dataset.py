"""Supervised fine-tuning examples built from grounded Q&A items.

An item (the gold-set format: ``id, question, answer, evidence, answerable, source, topic,
kind, split``) becomes chat messages in exactly the format the ``local`` generator serves
(:func:`rag.generation.local.chat_messages`: the system prompt, then the numbered context
blocks and the question), with an assistant turn as the target:

* answerable items: the context is what the retriever returns for the question (``hybrid``,
  k=4), cut to its relevant sentences as serving cuts it (rag.context.context_for, with the
  evidence sentences always kept). Chunks holding the evidence quotes are always present —
  when retrieval missed one it replaces a distractor at a random position (RAFT-style) — and
  the other blocks are real distractors. The target is the item's short answer with ``[n]`` after each sentence, ``n``
  being the block that holds the evidence the sentence rests on;
* unanswerable items: the retrieved context, target exactly :data:`rag.prompt.ABSTAIN_TEXT`;
* a seeded share (``removal_fraction``, ~15%) of answerable items appears a second time with
  every evidence-bearing chunk removed from the context, target :data:`ABSTAIN_TEXT` — so
  the model learns to answer from the context, not from the question.

Tokenised examples carry ``labels`` of -100 on every prompt token: the loss is on the answer
(and its end-of-turn token) only.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.abstention import ABSTAIN_TEXT
from rag.errors import InvalidInputError
from rag.qa import QAItem, contains_quote, normalize_for_match, parse_jsonl
from rag.types import Chunk, Hit

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt, padding)
DEFAULT_K = 4
DEFAULT_REMOVAL_FRACTION = 0.15
ExampleKind = Literal["answer", "abstain", "abstain_removed"]


# --- input items ------------------------------------------------------------------------


def parse_qa_lines(lines: Iterable[str], origin: str = "<data>") -> list[QAItem]:
    """Items (rag.qa's schema) from JSONL lines; InvalidInputError naming ``origin`` and the
    line number of the first malformed line, of an item that does not say whether it is
    answerable, or of an answerable item without answer or evidence."""
    items: list[QAItem] = []
    seen: dict[str, int] = {}
    for number, item in parse_jsonl(lines, QAItem, origin):
        if item.answerable is None:
            raise InvalidInputError(
                f"{origin}:{number}: answerable: a training item must say whether it is answerable"
            )
        if item.answerable and (not item.reference.strip() or not item.evidence):
            raise InvalidInputError(
                f"{origin}:{number}: answerable item {item.id!r} needs an answer and evidence"
            )
        if item.id in seen:
            raise InvalidInputError(
                f"{origin}:{number}: duplicate id {item.id!r} (first on line {seen[item.id]})"
            )
        seen[item.id] = number
        items.append(item)
    return items


def load_qa_items(path: Path) -> list[QAItem]:
    """The items of a JSONL file; InvalidInputError when it is missing, empty or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"training file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        items = parse_qa_lines(handle, origin=str(path))
    if not items:
        raise InvalidInputError(f"{path}: the training file is empty")
    return items


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes (recorded with every adapter)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- evidence matching ------------------------------------------------------------------

# Quote matching is rag.qa's (the same as the gold set's relevance labels).


class EvidenceIndex:
    """Finds the chunk that holds an evidence quote among all chunks of the corpus (used when
    retrieval missed it). Built once from an iterable of chunks."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._chunks = [(normalize_for_match(c.text), c) for c in chunks]
        self._cache: dict[tuple[str, str], Chunk | None] = {}

    def __len__(self) -> int:
        return len(self._chunks)

    def find(self, quote: str, prefer_source: str = "") -> Chunk | None:
        """A chunk containing ``quote``: one from ``prefer_source`` when several match."""
        key = (quote, prefer_source)
        if key not in self._cache:
            needle = normalize_for_match(quote)
            matches = [c for text, c in self._chunks if needle and needle in text]
            preferred = [c for c in matches if prefer_source and prefer_source in (c.source, c.url)]
            self._cache[key] = (preferred or matches or [None])[0]
        return self._cache[key]


# --- targets ----------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
_TRAILING_PUNCT = re.compile(r"[.!?]+[\"')\]]*$")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "is",
        "are",
        "was",
        "be",
        "and",
        "or",
        "not",
        "it",
        "that",
        "this",
        "with",
        "for",
        "as",
        "by",
        "from",
        "at",
        "what",
        "does",
        "do",
        "how",
        "why",
        "which",
        "when",
        "can",
        "should",
        "use",
        "you",
        "your",
        "i",
    ]
)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(normalize_for_match(text)) if w not in _STOPWORDS}


def split_answer_sentences(answer: str) -> list[str]:
    """The sentences of a short reference answer."""
    return [s.strip() for s in _SENTENCE_END.split(answer.strip()) if s.strip()]


def add_marker(sentence: str, numbers: Sequence[int]) -> str:
    """``sentence`` with ``[n]`` markers placed before its final punctuation."""
    markers = "".join(f"[{n}]" for n in numbers)
    match = _TRAILING_PUNCT.search(sentence)
    if match is None:
        return f"{sentence} {markers}"
    return f"{sentence[: match.start()].rstrip()} {markers}{sentence[match.start() :]}"


def cited_answer(answer: str, evidence: Sequence[str], blocks_of_quote: Sequence[int]) -> str:
    """The target text: each sentence of ``answer`` followed by the block number(s) holding
    the evidence it rests on. ``blocks_of_quote[i]`` is the 1-based block of ``evidence[i]``.

    With one evidence block every sentence cites it; with several, a sentence cites the
    block(s) of the quote(s) sharing most content words with it.
    """
    blocks = list(dict.fromkeys(blocks_of_quote))
    if not blocks:
        raise InvalidInputError("an answer needs at least one evidence block to cite")
    out: list[str] = []
    for sentence in split_answer_sentences(answer):
        if len(blocks) == 1:
            numbers = blocks
        else:
            words = _content_words(sentence)
            scores = [len(words & _content_words(q)) for q in evidence]
            best = max(scores)
            chosen = [b for b, s in zip(blocks_of_quote, scores, strict=True) if s == best]
            numbers = sorted(set(chosen)) if best > 0 else sorted(blocks)
        out.append(add_marker(sentence, numbers))
    return " ".join(out)


# --- examples ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SFTExample:
    """One training conversation: system, user (context + question), assistant (target)."""

    id: str
    kind: ExampleKind
    question: str  # stored as a field: nothing is parsed back out of the rendered prompt
    messages: list[dict[str, str]]

    @property
    def target(self) -> str:
        """The assistant turn."""
        return self.messages[-1]["content"]

    def to_dict(self) -> dict[str, Any]:
        """The JSONL shape (``{"id", "kind", "question", "messages"}``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "question": self.question,
            "messages": self.messages,
        }


@dataclass
class BuildStats:
    """What :func:`build_examples` did, for logs and run records."""

    answer: int = 0
    abstain: int = 0
    abstain_removed: int = 0
    unanswerable_left_out: int = 0
    evidence_inserted: int = 0  # answerable items whose evidence retrieval had missed
    distractors_dropped: int = 0  # blocks removed so an example fits ``max_len``
    skipped: list[str] = field(default_factory=list)  # ids whose evidence chunk was not found

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe counts."""
        return {
            "answer": self.answer,
            "abstain": self.abstain,
            "abstain_removed": self.abstain_removed,
            "unanswerable_left_out": self.unanswerable_left_out,
            "evidence_inserted": self.evidence_inserted,
            "distractors_dropped": self.distractors_dropped,
            "skipped": list(self.skipped),
        }


SearchFn = Callable[[str, int], list[Hit]]
FitsFn = Callable[[list[dict[str, str]]], bool]
ContextFn = Callable[[str, list[Hit], Sequence[str]], list[Hit]]


def messages_for(question: str, hits: list[Hit], target: str) -> list[dict[str, str]]:
    """The served prompt (rag.prompt's :class:`~rag.prompt.Prompt` as chat messages, exactly
    what the local generator sends) plus the target turn."""
    from rag.prompt import build_prompt

    return [*build_prompt(question, hits).chat_messages(), {"role": "assistant", "content": target}]


def _renumber(chunks: list[Chunk], retriever: str) -> list[Hit]:
    return [Hit(chunk=c, score=0.0, rank=i, retriever=retriever) for i, c in enumerate(chunks, 1)]


class ExampleBuilder:
    """Turns :class:`QAItem` s into :class:`SFTExample` s (see the module docstring).

    ``search(question, n)`` returns ranked hits (the RAG's ``hybrid`` retriever in practice);
    ``evidence_index`` finds evidence chunks retrieval missed; ``fits(messages)`` says whether
    a conversation fits the training length — distractors are dropped (lowest rank first)
    until it does.
    """

    def __init__(
        self,
        search: SearchFn,
        evidence_index: EvidenceIndex | None = None,
        *,
        k: int = DEFAULT_K,
        seed: int = 0,
        removal_fraction: float = DEFAULT_REMOVAL_FRACTION,
        fits: FitsFn | None = None,
        retriever: str = "hybrid",
        unanswerable: bool = True,
        context: ContextFn | None = None,
    ) -> None:
        if k < 1:
            raise InvalidInputError("k must be at least 1")
        if not 0.0 <= removal_fraction <= 1.0:
            raise InvalidInputError("removal_fraction must be between 0 and 1")
        self.search = search
        self.evidence_index = evidence_index
        self.k = k
        self.seed = seed
        self.removal_fraction = removal_fraction
        self.fits = fits
        self.retriever = retriever
        # False leaves the unanswerable items out: the model then never learns to abstain
        # and abstention is left to the pipeline's relevance check.
        self.unanswerable = unanswerable
        # ``context(question, hits, keep)``: the hits cut as serving cuts them
        # (rag.context.context_for), keeping the sentences that hold the ``keep`` quotes;
        # None trains on whole chunks.
        self.context = context
        self.stats = BuildStats()

    def build(self, items: Sequence[QAItem]) -> list[SFTExample]:
        """All examples for ``items`` in item order (seeded: same inputs, same output)."""
        rng = random.Random(self.seed)
        self.stats = BuildStats()
        examples: list[SFTExample] = []
        for item in items:
            # Twice the context size: the extra hits are spare distractors.
            candidates = [h.chunk for h in self.search(item.question, 2 * self.k)]
            if not item.answerable:
                if self.unanswerable:
                    examples.append(self._abstain(item, candidates[: self.k], "abstain"))
                    self.stats.abstain += 1
                else:
                    self.stats.unanswerable_left_out += 1
                continue
            answer = self._answer(item, candidates, rng)
            if answer is None:
                self.stats.skipped.append(item.id)
                continue
            examples.append(answer)
            self.stats.answer += 1
            if rng.random() < self.removal_fraction:
                free = [
                    c
                    for c in candidates
                    if not any(contains_quote(c.text, q) for q in item.evidence)
                ]
                if free:
                    examples.append(self._abstain(item, free[: self.k], "abstain_removed"))
                    self.stats.abstain_removed += 1
        return examples

    def _cut(self, question: str, hits: list[Hit], keep: Sequence[str]) -> list[Hit]:
        """The context the model will be shown for these hits (see ``context``)."""
        return self.context(question, hits, keep) if self.context is not None else hits

    def _fit(
        self, chunks: list[Chunk], keep: set[str], make: Callable[[list[Chunk]], SFTExample]
    ) -> SFTExample:
        """``make(chunks)``, dropping the lowest-ranked chunk not in ``keep`` until it fits."""
        example = make(chunks)
        while self.fits is not None and not self.fits(example.messages):
            droppable = [i for i, c in enumerate(chunks) if c.id not in keep]
            if not droppable:
                break
            chunks = chunks[: droppable[-1]] + chunks[droppable[-1] + 1 :]
            self.stats.distractors_dropped += 1
            example = make(chunks)
        return example

    def _abstain(self, item: QAItem, chunks: list[Chunk], kind: ExampleKind) -> SFTExample:
        suffix = "" if kind == "abstain" else "#removed"

        def make(blocks: list[Chunk]) -> SFTExample:
            hits = self._cut(item.question, _renumber(blocks, self.retriever), ())
            return SFTExample(
                f"{item.id}{suffix}",
                kind,
                item.question,
                messages_for(item.question, hits, ABSTAIN_TEXT),
            )

        # An abstention needs no block in particular, but keep at least one: an empty
        # context never reaches the model when serving (the generator abstains itself).
        return self._fit(chunks, {chunks[0].id} if chunks else set(), make)

    def _answer(
        self, item: QAItem, candidates: list[Chunk], rng: random.Random
    ) -> SFTExample | None:
        context = list(candidates[: self.k])
        spare = list(candidates[self.k :])
        source = item.source if isinstance(item.source, str) else ""
        for quote in item.evidence:
            if any(contains_quote(c.text, quote) for c in context):
                continue
            found = next((c for c in spare if contains_quote(c.text, quote)), None)
            if found is None and self.evidence_index is not None:
                found = self.evidence_index.find(quote, prefer_source=source)
            if found is None:
                return None  # no chunk holds the evidence: a target would teach guessing
            self.stats.evidence_inserted += 1
            evidence_ids = {
                c.id for c in context if any(contains_quote(c.text, q) for q in item.evidence)
            }
            distractors = [i for i, c in enumerate(context) if c.id not in evidence_ids]
            if len(context) >= self.k and distractors:
                context.pop(distractors[-1])  # the lowest-ranked distractor makes room
            context.insert(rng.randrange(len(context) + 1), found)
        keep = {c.id for c in context if any(contains_quote(c.text, q) for q in item.evidence)}

        def make(blocks: list[Chunk]) -> SFTExample:
            hits = self._cut(item.question, _renumber(blocks, self.retriever), item.evidence)
            where = [
                next(n for n, h in enumerate(hits, 1) if contains_quote(h.chunk.text, quote))
                for quote in item.evidence
            ]
            target = cited_answer(item.reference, item.evidence, where)
            return SFTExample(
                item.id, "answer", item.question, messages_for(item.question, hits, target)
            )

        return self._fit(context, keep, make)


def write_examples(examples: Sequence[SFTExample], path: Path) -> None:
    """Write examples as JSONL (``{"id", "kind", "question", "messages"}`` per line)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")


def read_examples(path: Path) -> list[SFTExample]:
    """Examples written by :func:`write_examples` (line-numbered errors)."""
    examples: list[SFTExample] = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                messages = row["messages"]
                if (
                    not messages
                    or messages[-1]["role"] != "assistant"
                    or not all(
                        isinstance(m.get("content"), str) and m.get("role") for m in messages
                    )
                ):
                    raise ValueError("messages must end with an assistant turn")
                question = row.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise ValueError(
                        "no 'question' field (written by an older mlrag: build the examples again)"
                    )
                examples.append(
                    SFTExample(
                        str(row.get("id", number)), row.get("kind", "answer"), question, messages
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise InvalidInputError(f"{path}:{number}: not an SFT example: {exc}") from exc
    if not examples:
        raise InvalidInputError(f"{path}: the file is empty")
    return examples


def is_sft_file(path: Path) -> bool:
    """Whether the first non-blank line of a JSONL file is an SFT example (has ``messages``)."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    return "messages" in json.loads(line)
                except (json.JSONDecodeError, TypeError):
                    return False
    return False


# --- tokenisation -----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of a whole conversation and labels that are -100 outside the answer."""

    id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def answer_tokens(self) -> int:
        """Tokens that carry loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _template_ids(
    tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool
) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def tokenize_example(example: SFTExample, tokenizer: Any, max_len: int) -> TokenizedExample | None:
    """Token ids and labels (-100 on the prompt) of ``example``; None when it is longer than
    ``max_len`` tokens (cutting it would drop the answer or the context it cites)."""
    prompt = _template_ids(tokenizer, example.messages[:-1], generation_prompt=True)
    full = _template_ids(tokenizer, example.messages, generation_prompt=False)
    if full[: len(prompt)] != prompt:
        raise InvalidInputError(
            "the tokenizer's chat template does not extend the prompt with the answer; "
            "cannot separate answer tokens from prompt tokens"
        )
    if len(full) > max_len:
        return None
    labels = [IGNORE_INDEX] * len(prompt) + full[len(prompt) :]
    return TokenizedExample(example.id, full, labels)


def length_checker(tokenizer: Any, max_len: int) -> FitsFn:
    """A ``fits(messages)`` for :class:`ExampleBuilder`: the conversation is ≤ ``max_len``
    tokens in ``tokenizer``'s chat template."""

    def fits(messages: list[dict[str, str]]) -> bool:
        return len(_template_ids(tokenizer, messages, generation_prompt=False)) <= max_len

    return fits
