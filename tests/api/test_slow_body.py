"""Slow request bodies: a client that declares a body and sends it slowly (or never) gets 408
in the error shape and its connection closed within ``body_timeout_s``, on a real uvicorn on
127.0.0.1 driven by raw sockets; idle keep-alive connections close after
``keep_alive_timeout_s``."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import anyio
import pytest

from api.limits import BodyTimeoutMiddleware
from api.server import uvicorn_options

BODY_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 1.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(settings, fake_rag):
    """uvicorn on 127.0.0.1 with the options ``mlrag serve`` uses, in a background thread."""
    import uvicorn

    from api.app import create_app

    settings = settings.model_copy(
        update={"body_timeout_s": BODY_TIMEOUT_S, "keep_alive_timeout_s": KEEP_ALIVE_S}
    )
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, rag=fake_rag),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic()


def _slow_request(path: str = "/v1/ask", declared: int = 100, sent: bytes = b"{") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode() + sent


@pytest.mark.server
def test_a_stalled_body_gets_408_and_the_connection_is_closed(server) -> None:
    sock = _connect(server)
    started = time.monotonic()
    sock.sendall(_slow_request())
    data, closed_at = _read_until_closed(sock)
    sock.close()
    elapsed = closed_at - started
    assert BODY_TIMEOUT_S * 0.8 <= elapsed < BODY_TIMEOUT_S + 2.0, elapsed
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"connection: close" in head.lower()
    assert b"x-content-type-options: nosniff" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"


@pytest.mark.server
def test_many_slow_clients_are_all_closed_and_others_are_served(server) -> None:
    socks = [_connect(server) for _ in range(50)]
    started = time.monotonic()
    for sock in socks:
        sock.sendall(_slow_request())
    # A well-behaved client is served meanwhile.
    ok = _connect(server)
    body = b'{"question": "What is overfitting?"}'
    ok.sendall(_slow_request(declared=len(body), sent=body).replace(b"HTTP/1.1", b"HTTP/1.0"))
    answer, _ = _read_until_closed(ok)
    ok.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    for sock in socks:
        data, closed_at = _read_until_closed(sock)
        sock.close()
        assert data.startswith(b"HTTP/1.1 408"), data[:100]
        assert closed_at - started < BODY_TIMEOUT_S + 3.0
    assert time.monotonic() - started < BODY_TIMEOUT_S + 3.0


@pytest.mark.server
def test_a_body_trickling_in_is_bounded_in_total_not_per_chunk(server) -> None:
    """One byte every 0.2 s never idles long, but the whole body is still bounded."""
    sock = _connect(server)
    started = time.monotonic()
    sock.sendall(_slow_request(sent=b""))

    def trickle() -> None:
        for _ in range(60):  # fewer than the 100 declared bytes: the body never completes
            try:
                sock.sendall(b" ")
            except OSError:
                return
            time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    data, closed_at = _read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert closed_at - started < BODY_TIMEOUT_S + 2.0


@pytest.mark.server
def test_idle_keep_alive_connections_are_closed(server) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    idle_from = time.monotonic()
    rest, closed_at = _read_until_closed(sock)
    sock.close()
    assert rest == b""
    assert closed_at - idle_from < KEEP_ALIVE_S + 2.0


def test_the_middleware_answers_408_when_the_body_stalls() -> None:
    """Without a server: the first chunk arrives, the rest never does."""
    sent: list[dict[str, Any]] = []
    app_saw: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            app_saw.append(message.get("body", b""))
            if not message.get("more_body"):
                break

    async def receive() -> dict[str, Any]:
        if not app_saw:
            return {"type": "http.request", "body": b"{", "more_body": True}
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> float:
        started = anyio.current_time()
        await BodyTimeoutMiddleware(app, timeout_s=0.2)({"type": "http"}, receive, send)
        return anyio.current_time() - started

    elapsed = anyio.run(run)
    assert elapsed < 2.0
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"


def test_a_complete_body_then_waiting_for_disconnect_is_not_cut() -> None:
    """After the body, receive() waits for the disconnect (streaming responses): no deadline."""
    sent: list[dict[str, Any]] = []
    calls = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["body"] == b"{}"
        message = await receive()  # a streaming response listening for the disconnect
        assert message["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await anyio.sleep(0.5)  # longer than the body timeout
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(lambda: BodyTimeoutMiddleware(app, timeout_s=0.2)({"type": "http"}, receive, send))
    assert sent[0]["status"] == 200


def test_uvicorn_options_come_from_the_settings(settings) -> None:
    tuned = settings.model_copy(update={"keep_alive_timeout_s": 7.0, "shutdown_grace_s": 12.0})
    options = uvicorn_options(tuned)
    assert options["timeout_keep_alive"] == 7.0
    assert options["timeout_graceful_shutdown"] == 12.0
