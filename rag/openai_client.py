"""The one way the project talks to an OpenAI-compatible inference server (vLLM, llama.cpp's
server, TGI, Ollama): the client, the translation of SDK errors into the project's typed
errors, and the retry policy.

The SDK's own retries are off (``max_retries=0``): :func:`retry_wait` decides, so a streamed
answer is retried only before its first token and a non-streamed one gets the same backoff.
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import TYPE_CHECKING, Any

from rag.errors import (
    ConfigError,
    GenerationError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

if TYPE_CHECKING:
    import openai

    from rag.config import GenerationSettings

# Sent when no key is configured: servers started without --api-key ignore it, and the SDK
# refuses to build a client without one.
NO_KEY = "none"
# The longest Retry-After we sleep through; a longer one goes back to the caller at once.
MAX_RETRY_WAIT_S = 10.0
# Exponential backoff without Retry-After: base * 2**attempt, capped, with up to 25% jitter.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# Statuses that mean "busy or broken for now", worth a retry and a 503.
TRANSIENT_STATUSES = frozenset({408, 409, 429})


def openai_client(settings: GenerationSettings) -> openai.OpenAI:
    """A client for ``settings.openai_base_url`` with the settings' key and timeout and the
    SDK's retries off. ConfigError when no base URL is set."""
    import httpx2
    import openai

    base_url = (settings.openai_base_url or "").strip()
    if not base_url:
        raise ConfigError(
            "the 'openai' generator needs an inference server: set MLRAG_OPENAI_BASE_URL "
            "(e.g. http://127.0.0.1:8080/v1)"
        )
    secret = settings.openai_api_key
    key = secret.get_secret_value().strip() if secret is not None else ""
    timeout = settings.openai_timeout_s
    return openai.OpenAI(
        base_url=base_url,
        api_key=key or NO_KEY,
        # read = the longest gap between two streamed tokens; connecting should be quick.
        timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
        max_retries=0,
    )


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``Retry-After`` / ``retry-after-ms`` (a number or an HTTP date), or None."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _status_detail(err: openai.APIStatusError) -> str:
    """The server's error message (OpenAI shape ``{"error": {"message"}}`` or plain text)."""
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return err.message


def translate_error(err: BaseException, server: str, *, mid_answer: bool = False) -> Exception:
    """The project's typed error for an SDK error from ``server`` (its base URL):

    * timeouts → UpstreamTimeoutError (504);
    * connection failures, 408/409/429 and 5xx → UpstreamUnavailableError (503) with the
      server's Retry-After;
    * other 4xx and in-stream error events → GenerationError (502).

    ``mid_answer`` words the message for a stream that failed after its first token.
    """
    import httpx2
    import openai

    where = f"inference server {server}"
    if mid_answer:
        where += " mid-answer"
    if isinstance(err, (openai.APITimeoutError, httpx2.TimeoutException)):
        return UpstreamTimeoutError(f"{where}: timed out")
    if isinstance(err, (openai.APIConnectionError, httpx2.TransportError)):
        cause = err.__cause__ or err
        return UpstreamUnavailableError(f"{where}: connection failed ({cause})")
    if isinstance(err, openai.APIStatusError):
        detail = _status_detail(err)
        status = err.status_code
        if status in TRANSIENT_STATUSES or status >= 500:
            return UpstreamUnavailableError(
                f"{where}: HTTP {status}: {detail}",
                retry_after=parse_retry_after(err.response.headers),
            )
        hint = ""
        if status in (401, 403):
            hint = " (check MLRAG_OPENAI_API_KEY)"
        elif status == 404:
            hint = " (check MLRAG_OPENAI_MODEL and the adapter names the server lists)"
        return GenerationError(f"{where} rejected the request: HTTP {status}: {detail}{hint}")
    if isinstance(err, openai.APIError):
        return GenerationError(f"{where}: {err.message}")
    return GenerationError(f"{where}: {err}")


def is_retryable(err: BaseException) -> bool:
    """Whether a failure before the first token may be retried: connection errors (connect
    timeouts included), 408/409/429 and 5xx. A read timeout is not retried: the server may
    still be working on the request."""
    import httpx2
    import openai

    if isinstance(err, openai.APITimeoutError):
        return isinstance(err.__cause__, httpx2.ConnectTimeout)
    if isinstance(err, openai.APIConnectionError):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in TRANSIENT_STATUSES or err.status_code >= 500
    return False


def retry_wait(
    err: BaseException,
    attempt: int,
    max_retries: int,
    server: str,
    *,
    backoff_s: float = BACKOFF_BASE_S,
) -> float:
    """Seconds to wait before retry ``attempt + 1`` after ``err``; raises the typed error
    instead when ``err`` is not retryable, the retries are spent, or the server asked for a
    wait longer than :data:`MAX_RETRY_WAIT_S`."""
    typed = translate_error(err, server)
    if not is_retryable(err) or attempt >= max_retries:
        if isinstance(typed, UpstreamUnavailableError) and attempt > 0:
            typed.args = (f"{typed} (after {attempt} retries)",)
        raise typed from err
    retry_after = getattr(typed, "retry_after", None)
    if retry_after is not None:
        if retry_after > MAX_RETRY_WAIT_S:
            raise typed from err
        return retry_after
    return min(backoff_s * 2**attempt, BACKOFF_CAP_S) * (1 - 0.25 * random.random())
