"""``mlrag finetune synth``: draft more grounded Q&A items from corpus chunks with Claude.

Each sampled chunk is sent to Claude with a request for one question a user might ask that
the chunk answers, a short answer, and evidence quotes copied from the chunk, as a JSON
object. A draft is kept only if it parses, its evidence occurs verbatim in the chunk
(whitespace aside), and it overlaps neither the eval gold set nor an earlier draft — the
output is a starting point for human review, in the gold-set format, never trained on
blindly.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.dataset import load_qa_items
from finetune.overlap import find_overlaps
from rag.errors import (
    InvalidInputError,
    ModelUnavailableError,
    UpstreamUnavailableError,
)
from rag.qa import QAItem
from rag.types import Chunk, content_hash

if TYPE_CHECKING:
    import anthropic

    from rag.config import Settings

MIN_CHUNK_CHARS = 200  # shorter chunks are mostly headings and link lists
MAX_ANSWER_CHARS = 400
KINDS = ("paraphrase", "keyword")

SYNTH_SYSTEM = """You write evaluation-quality training data for a question-answering system \
over machine-learning documentation. You are given one passage. Write ONE question a \
practitioner might type that this passage alone answers, the way users type (short, \
sometimes informal), a short answer (1-2 sentences) that uses only the passage, and 1-2 \
evidence quotes copied character for character from the passage (each one sentence or \
clause, 30-200 characters). If the passage answers no useful question (navigation, \
license text, a bare list of links), reply with {"skip": true}.

Reply with only a JSON object:
{"question": "...", "answer": "...", "evidence": ["..."], "kind": "paraphrase" or "keyword"}
"kind" is "keyword" when the question names the exact terms of the passage, else "paraphrase"."""


def claude_client(settings: Settings) -> anthropic.Anthropic:
    """An Anthropic client from the settings; ModelUnavailableError without an API key."""
    from rag.anthropic_client import anthropic_client

    return anthropic_client(settings, "`mlrag finetune synth` drafts with Claude")


def passage_prompt(chunk: Chunk) -> str:
    """The user turn for one chunk: where it is from, then the passage."""
    where = " > ".join(p for p in (chunk.title, chunk.section) if p)
    return f"Source: {where or chunk.source}\n\n<passage>\n{chunk.text.strip()}\n</passage>"


_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def _squash(text: str) -> str:
    return " ".join(text.split())


def parse_draft(text: str, chunk: Chunk) -> QAItem | str:
    """The item Claude drafted for ``chunk``, or the reason it is rejected."""
    match = _JSON_OBJECT.search(text)
    if match is None:
        return "no JSON"
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return "bad JSON"
    if not isinstance(data, dict):
        return "bad JSON"
    if data.get("skip"):
        return "skipped by Claude"
    question, answer, evidence = data.get("question"), data.get("answer"), data.get("evidence")
    if not isinstance(question, str) or not question.strip():
        return "no question"
    if not isinstance(answer, str) or not answer.strip() or len(answer) > MAX_ANSWER_CHARS:
        return "no or long answer"
    if (
        not isinstance(evidence, list)
        or not evidence
        or not all(isinstance(q, str) and q.strip() for q in evidence)
    ):
        return "no evidence"
    body = _squash(chunk.text)
    if not all(_squash(q) in body for q in evidence):
        return "evidence not verbatim"
    kind = data.get("kind") if data.get("kind") in KINDS else "paraphrase"
    return QAItem(
        id=f"synth-{content_hash(chunk.id + question)[:10]}",
        question=question.strip(),
        answer=answer.strip(),
        evidence=[_squash(q) for q in evidence],
        answerable=True,
        source=chunk.url or chunk.source,
        topic=chunk.topic,
        kind=kind,
        split="train",
    )


def _reply_text(message: Any) -> str:
    return "".join(
        getattr(block, "text", "")
        for block in message.content
        if getattr(block, "type", "") == "text"
    )


def _ask(client: anthropic.Anthropic, model: str, chunk: Chunk) -> str:
    import anthropic

    try:
        message = client.messages.create(
            model=model,
            max_tokens=600,
            system=SYNTH_SYSTEM,
            messages=[{"role": "user", "content": passage_prompt(chunk)}],
        )
    except anthropic.AuthenticationError as err:
        raise ModelUnavailableError(f"invalid API key for Claude: {err.message}") from err
    except (
        anthropic.APIConnectionError,
        anthropic.RateLimitError,
        anthropic.InternalServerError,
    ) as err:
        raise UpstreamUnavailableError(f"Claude is unavailable: {type(err).__name__}") from err
    except anthropic.APIStatusError as err:
        raise InvalidInputError(
            f"Claude refused the request ({err.status_code}): {err.message}"
        ) from err
    return _reply_text(message)


def sample_chunks(chunks: Iterable[Chunk], n: int, seed: int) -> list[Chunk]:
    """A seeded random order of the chunks long enough to hold an answer (up to ``n``)."""
    eligible = sorted(
        (c for c in chunks if len(c.text.strip()) >= MIN_CHUNK_CHARS), key=lambda c: c.id
    )
    random.Random(seed).shuffle(eligible)
    return eligible[:n]


def synthesize(
    client: anthropic.Anthropic,
    model: str,
    chunks: Sequence[Chunk],
    n: int,
    gold: Sequence[QAItem] = (),
) -> tuple[list[QAItem], Counter[str]]:
    """Up to ``n`` accepted drafts from ``chunks`` (tried in order), and the rejection
    reasons counted."""
    if n < 1:
        raise InvalidInputError("--n must be at least 1")
    accepted: list[QAItem] = []
    rejected: Counter[str] = Counter()
    for chunk in chunks:
        if len(accepted) >= n:
            break
        draft = parse_draft(_ask(client, model, chunk), chunk)
        if isinstance(draft, str):
            rejected[draft] += 1
        elif find_overlaps([draft], gold):
            rejected["overlaps the gold set"] += 1
        elif find_overlaps([draft], accepted):
            rejected["duplicate draft"] += 1
        else:
            accepted.append(draft)
    return accepted, rejected


def synthesize_to_file(
    settings: Settings,
    out: Path,
    *,
    n: int = 20,
    seed: int = 0,
    gold: Path | None = None,
    force: bool = False,
    client: anthropic.Anthropic | None = None,
    chunks: Sequence[Chunk] | None = None,
) -> dict[str, Any]:
    """Draft items from the index's chunks (or ``chunks``) and write them to ``out``."""
    out = Path(out)
    if out.exists() and not force:
        raise InvalidInputError(f"{out} exists; pass --force to overwrite it")
    client = client or claude_client(settings)
    if chunks is None:
        from rag.store import ChunkStore

        chunks = list(ChunkStore.from_settings(settings).iter_chunks())
        if not chunks:
            raise InvalidInputError("the index is empty: run `mlrag ingest` first")
    gold_items = load_qa_items(gold) if gold is not None and Path(gold).is_file() else []
    # Three chunks per wanted item: some passages answer nothing and some drafts fail checks.
    items, rejected = synthesize(
        client, settings.claude_model, sample_chunks(chunks, 3 * n, seed), n, gold_items
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item.model_dump(), ensure_ascii=False) + "\n")
    return {"written": len(items), "rejected": sum(rejected.values()), "reasons": dict(rejected)}
