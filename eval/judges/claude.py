"""The Claude judge, RAGAS-style faithfulness: Claude splits an answer sentence into atomic
claims and checks each against the context; support = supported claims / claims.

Judging is a separate request per sentence (JSON reply), so one bad reply
affects one sentence only; an unparsable reply counts as unsupported and is logged.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eval.judges.base import JudgePair
from rag.errors import GenerationError, UpstreamUnavailableError

if TYPE_CHECKING:
    import anthropic

    from rag.config import Settings

log = logging.getLogger(__name__)

JUDGE_SYSTEM_PROMPT = """You check whether a statement is supported by a context.
1. Split the statement into short, self-contained atomic claims.
2. For each claim decide whether the context alone supports it (true) or not (false). \
Outside knowledge does not count; a claim the context contradicts or does not mention is false.
Reply with JSON only, no prose: {"claims": [{"claim": "...", "supported": true}]}"""

_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def build_judge_message(sentence: str, passages: Sequence[str]) -> str:
    """The user turn: numbered context passages, then the statement to check."""
    blocks = "\n\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1))
    return f"<context>\n{blocks}\n</context>\n\nStatement: {sentence.strip()}"


def parse_verdict(text: str) -> float | None:
    """Share of supported claims in a judge reply (1.0 for a statement with no claims), or
    None when the reply is not the expected JSON."""
    match = _JSON_OBJECT.search(text)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    claims = data.get("claims") if isinstance(data, dict) else None
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        return None
    if not claims:
        return 1.0
    return sum(1 for c in claims if c.get("supported") is True) / len(claims)


class ClaudeJudge:
    """Claim extraction and verification by Claude (see module docstring)."""

    name = "claude"

    def __init__(
        self,
        client: anthropic.Anthropic,
        model: str,
        threshold: float = 1.0,
        max_tokens: int = 1024,
    ) -> None:
        self.client = client
        self.model = model
        self.threshold = threshold  # every claim must be supported
        self.max_tokens = max_tokens

    @classmethod
    def from_settings(cls, settings: Settings, client: Any | None = None) -> ClaudeJudge:
        """A judge using ``client`` or one built from the settings' key and base URL."""
        if client is None:
            from rag.anthropic_client import anthropic_client

            client = anthropic_client(settings, "the 'claude' judge needs Claude")
        return cls(client, settings.claude_model)

    def _judge_one(self, sentence: str, passages: Sequence[str]) -> float:
        import anthropic

        try:
            message = self.client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=JUDGE_SYSTEM_PROMPT,
                messages=[{"role": "user", "content": build_judge_message(sentence, passages)}],
            )
        except anthropic.APIStatusError as err:
            if err.status_code in (408, 409, 429) or err.status_code >= 500:
                raise UpstreamUnavailableError(f"Claude judge unavailable: {err.message}") from err
            raise GenerationError(
                f"Claude judge request rejected ({err.status_code}): {err.message}"
            ) from err
        except anthropic.APIError as err:
            raise UpstreamUnavailableError(f"Claude judge unavailable: {err}") from err
        text = "".join(getattr(block, "text", "") for block in message.content)
        score = parse_verdict(text)
        if score is None:
            log.warning("claude judge: unparsable reply for %r: %.200s", sentence[:60], text)
            return 0.0
        return round(score, 4)

    def support(self, pairs: Sequence[JudgePair]) -> list[float]:
        """Share of each sentence's claims that its passages support."""
        return [self._judge_one(sentence, passages) for sentence, passages in pairs]

    def describe(self) -> str:
        """One line for reports."""
        return f"claude ({self.model}; RAGAS-style claims, supported when ≥ {self.threshold:g} of claims hold)"
