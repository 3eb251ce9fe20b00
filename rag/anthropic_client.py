"""The one way the project builds an Anthropic client (the ``claude`` generator, the eval's
Claude judge and fine-tuning's data synthesizer all use it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.errors import ModelUnavailableError

if TYPE_CHECKING:
    import anthropic

    from rag.config import GenerationSettings


def anthropic_client(settings: GenerationSettings, purpose: str) -> anthropic.Anthropic:
    """A client from the settings' key, base URL, timeout and retry count.

    Raises ModelUnavailableError naming ``purpose`` (what needs Claude) without a key.
    """
    import anthropic

    secret = settings.anthropic_api_key
    key = secret.get_secret_value().strip() if secret is not None else ""
    if not key:
        raise ModelUnavailableError(
            f"{purpose}: set ANTHROPIC_API_KEY (or MLRAG_ANTHROPIC_API_KEY)"
        )
    return anthropic.Anthropic(
        api_key=key,
        base_url=settings.anthropic_base_url,
        timeout=settings.claude_timeout_s,
        max_retries=settings.claude_max_retries,
    )
