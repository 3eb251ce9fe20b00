"""Request limits: a per-client token-bucket rate limiter, a bounded gate on concurrent
answer generation, and ASGI middlewares that cap request body size and the time to
receive a body."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from rag.errors import CapacityError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by client (API-key digest or IP): ``per_minute`` requests per
    minute with bursts up to ``per_minute``. ``per_minute == 0`` disables limiting."""

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max_clients = max_clients  # bounds memory under many distinct clients
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def try_acquire(self, client: str, now: float | None = None) -> float:
        """Take one token for ``client``; returns 0 when allowed, else seconds until a token."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = _Bucket(tokens=self.capacity, updated=now)
                self._buckets[client] = bucket
                if len(self._buckets) > self._max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
                bucket.tokens = min(
                    self.capacity, bucket.tokens + (now - bucket.updated) * self.rate
                )
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """Whole seconds for a ``Retry-After`` header (at least 1)."""
        return str(max(1, math.ceil(wait_s)))


class GenerationGate:
    """At most ``max_active`` generations at once and ``max_waiting`` queued behind them;
    anything beyond is refused at once with :class:`CapacityError` (503 + Retry-After)
    instead of piling up."""

    def __init__(self, max_active: int, max_waiting: int) -> None:
        self.max_active = max_active
        self.max_waiting = max_waiting
        self._semaphore: asyncio.Semaphore | None = None
        self._admitted = 0  # active + waiting

    @property
    def admitted(self) -> int:
        return self._admitted

    def _sem(self) -> asyncio.Semaphore:
        # Created lazily so it binds to the running loop of the app, not the importer's.
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_active)
        return self._semaphore

    def admit(self) -> None:
        """Reserve a place (active or queued) or raise :class:`CapacityError`."""
        if self._admitted >= self.max_active + self.max_waiting:
            raise CapacityError("generation capacity exhausted; retry shortly")
        self._admitted += 1

    def release_admission(self) -> None:
        """Give back a place reserved by :meth:`admit`."""
        self._admitted -= 1

    async def acquire(self) -> None:
        """Admit (or raise :class:`CapacityError`), then wait for a free slot."""
        self.admit()
        try:
            await self._sem().acquire()
        except BaseException:
            self.release_admission()
            raise

    def release(self) -> None:
        """Free a slot taken by :meth:`acquire`."""
        self._sem().release()
        self.release_admission()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a generation slot for the duration of the block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class BodySizeLimitMiddleware:
    """Rejects request bodies over ``max_bytes`` with 413, whether or not a Content-Length
    was sent. The body is buffered (it is small by construction) and replayed to the app;
    later ``receive`` calls pass through so disconnects are still seen."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") and length is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        await send_error(
            send, 413, "payload_too_large", f"request body exceeds {self.max_bytes} bytes"
        )


async def send_error(
    send: Send, status: int, code: str, message: str, *, close: bool = False
) -> None:
    """Send a whole JSON error response from ASGI middleware (``close``: end the connection
    after it, because the rest of the request will not be read)."""
    import json

    payload = json.dumps(error_body(code, message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class _BodyTimeout(Exception):
    """Raised out of ``receive`` when the request body did not arrive in time."""


class BodyTimeoutMiddleware:
    """Bounds the time to receive a request body: a client whose body has not fully arrived
    ``timeout_s`` after the request started gets 408 and its connection is closed, so slow
    or stalled uploads cannot hold connections open. Once the body is complete, ``receive``
    passes through untouched (streaming responses wait on it for the client's disconnect)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = anyio.current_time() + self.timeout_s
        body_done = False
        response_started = False

        async def receive_in_time() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_in_time, tracking_send)
        except _BodyTimeout:
            if response_started:
                raise  # nothing sensible left to send; the server drops the connection
            await send_error(
                send,
                408,
                "request_timeout",
                f"the request body did not arrive within {self.timeout_s:g} s",
                close=True,
            )


def client_identity(api_key_digest: str | None, client_host: str | None) -> str:
    """The rate-limit key: the caller's API key digest when it has one, else its IP."""
    return f"key:{api_key_digest}" if api_key_digest else f"ip:{client_host or 'unknown'}"
