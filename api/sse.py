"""Server-Sent Events: running a blocking answer stream off the event loop, with an idle
timeout, and always closing the generator's iterator (on success, failure, timeout or
client disconnect) so a local model stops generating for nobody."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from rag.errors import GenerationError

log = logging.getLogger(__name__)

T = TypeVar("T")
_DONE = object()

SSE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # proxies (nginx) must not buffer the stream
}


class StreamTimeoutError(GenerationError):
    """The generator produced nothing for longer than the stream idle timeout."""

    code = "generation_timeout"
    http_status = 504


def sse_event(event: str | None, data: Any) -> str:
    """One SSE message; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines = [f"event: {event}"] if event else []
    lines.extend(f"data: {line}" for line in payload.split("\n"))
    return "\n".join(lines) + "\n\n"


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:  # noqa: BLE001 - closing must never mask the original outcome
        log.warning("closing the answer stream failed", exc_info=True)


async def iterate_blocking(
    make_iterator: Callable[[], Iterator[T]], idle_timeout_s: float
) -> AsyncIterator[T]:
    """Items of a blocking iterator, each ``next()`` in a worker thread.

    Raises :class:`StreamTimeoutError` when one item takes longer than ``idle_timeout_s``.
    The iterator is closed exactly once when iteration ends for any reason; if a ``next()``
    is still running in its thread (timeout, cancellation), that thread closes it when the
    call returns, because a running generator cannot be closed from outside.
    """
    iterator = await anyio.to_thread.run_sync(lambda: iter(make_iterator()))
    lock = threading.Lock()
    running = False
    finished = False  # set once the consumer is gone; whoever sees it last closes

    def step() -> Any:
        nonlocal running
        with lock:
            if finished:
                return _DONE
            running = True
        try:
            return next(iterator)
        except StopIteration:
            return _DONE
        finally:
            with lock:
                running = False
                close_now = finished
            if close_now:
                _close(iterator)

    try:
        while True:
            try:
                with anyio.fail_after(idle_timeout_s):
                    item = await anyio.to_thread.run_sync(step, abandon_on_cancel=True)
            except TimeoutError:
                raise StreamTimeoutError(
                    f"the generator produced nothing for {idle_timeout_s:g} s"
                ) from None
            if item is _DONE:
                return
            yield item
    finally:
        with lock:
            finished = True
            close_now = not running
        if close_now:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_close, iterator)


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that always finalises its body iterator, also when the client
    disconnects while the iterator is suspended between chunks (otherwise cleanup would wait
    for garbage collection)."""

    def __init__(
        self, content: Any, *, on_close: Callable[[], Awaitable[None]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                try:
                    if aclose is not None:
                        await aclose()
                finally:
                    if self.on_close is not None:
                        await self.on_close()
