"""Failures while answering: mid-stream errors, timeouts, client disconnects, an upstream
(Claude) stream that drops, and a restart over the same data dir."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from tests.api.conftest import FakeRAG, parse_sse


def _wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_generator_error_mid_stream_sends_an_error_event_and_logs(client, fake_rag, caplog) -> None:
    fake_rag.fail_after = 2
    caplog.set_level(logging.WARNING)
    response = client.post("/v1/ask", json={"question": "What is overfitting?", "stream": True})
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["token", "token", "error"]
    assert events[-1][1]["error"]["code"] == "generation_failed"
    assert any("answer stream failed" in r.getMessage() for r in caplog.records)
    assert fake_rag.closed == [True]
    assert client.app.state.services.gate.admitted == 0
    metrics = client.get("/metrics").text
    assert 'mlrag_generation_errors_total{code="generation_failed"} 1.0' in metrics


def test_generator_error_without_streaming_is_a_502_json_error(client, fake_rag) -> None:
    fake_rag.fail_after = 0
    response = client.post("/v1/ask", json={"question": "What is overfitting?"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "generation_failed"
    assert client.app.state.services.gate.admitted == 0


def test_a_stalled_generator_times_out_with_an_error_event_and_is_closed(
    make_client, fake_rag
) -> None:
    fake_rag.hang_after, fake_rag.hang_s = 1, 1.5
    client = make_client(stream_idle_timeout_s=0.3)
    started = time.monotonic()
    response = client.post("/v1/ask", json={"question": "What is overfitting?", "stream": True})
    assert time.monotonic() - started < 1.4, "the response must not wait for the stalled generator"
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["token", "error"]
    assert events[-1][1]["error"]["code"] == "generation_timeout"
    # The worker thread closes the generator as soon as its pending step returns.
    assert _wait_for(lambda: fake_rag.closed == [True]), fake_rag.closed
    assert client.app.state.services.gate.admitted == 0


def test_client_disconnect_mid_stream_closes_the_generator(settings) -> None:
    from api.app import create_app

    fake = FakeRAG(tokens=[f"t{i} " for i in range(200)], token_delay_s=0.02)
    app = create_app(settings, rag=fake)
    body = json.dumps({"question": "What is overfitting?", "stream": True}).encode()

    async def scenario() -> list[bytes]:
        disconnected = asyncio.Event()
        request_sent = False
        chunks: list[bytes] = []

        async def receive() -> dict:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                chunks.append(message["body"])
                if len(chunks) == 2:
                    disconnected.set()  # the client goes away after two events

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/ask",
            "raw_path": b"/v1/ask",
            "query_string": b"",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=5)
        return chunks

    chunks = asyncio.run(scenario())
    assert 2 <= len(chunks) < 20, "streaming must stop soon after the disconnect"
    assert _wait_for(lambda: fake.closed == [True]), f"generator not closed: {fake.closed}"
    assert app.state.services.gate.admitted == 0


def test_claude_stream_dropping_mid_answer_gives_an_error_event(
    make_client, real_rag, caplog
) -> None:
    from tests.rag.anthropic_fakes import (
        RecordingTransport,
        message_body,
        message_stream_events,
        sse_response,
    )
    from tests.rag.anthropic_fakes import (
        make_client as make_claude,
    )

    events = message_stream_events(
        message_body("Overfitting means fitting noise in the training data."), delta_chars=8
    )
    transport = RecordingTransport([sse_response(events, fail_after=6)])
    real_rag.shared.claude_client = make_claude(transport, max_retries=0)
    client = make_client(rag=real_rag)
    caplog.set_level(logging.WARNING)
    response = client.post(
        "/v1/ask", json={"question": "What is overfitting?", "generator": "claude", "stream": True}
    )
    assert response.status_code == 200
    sse = parse_sse(response.text)
    assert sse[-1][0] == "error", sse
    assert sse[-1][1]["error"]["code"] in {"generation_failed", "upstream_unavailable"}
    assert not any(name == "answer" for name, _ in sse), (
        "no partial answer may be presented as complete"
    )
    assert transport.requests, "the request must have reached the (mock) Claude API"
    assert any("answer stream failed" in r.getMessage() for r in caplog.records)


def test_restart_on_the_same_data_dir_answers_the_same(
    tiny_settings, embedder, monkeypatch
) -> None:
    from fastapi.testclient import TestClient

    import api.app
    from rag.pipeline import RAG

    # Each start builds a fresh pipeline from the data dir, as a restarted process would
    # (the already-loaded embedding model is reused to keep the test fast).
    monkeypatch.setattr(api.app, "load_rag", lambda s: RAG(s, embedder=embedder))
    question = {"question": "How does gradient descent work?", "generator": "extractive"}
    answers = []
    for _ in range(2):
        with TestClient(api.app.create_app(tiny_settings)) as client:
            assert client.get("/ready").status_code == 200
            answers.append(client.post("/v1/ask", json=question).json())
    first, second = answers
    assert first["abstained"] is False
    assert first["text"] == second["text"]
    assert first["citations"] == second["citations"]


@pytest.mark.parametrize("stream", [False, True])
def test_capacity_exhausted_is_503_with_retry_after(make_client, fake_rag, stream) -> None:
    import httpx

    fake_rag.ask_delay_s = 0.5
    fake_rag.token_delay_s = 0.1
    client = make_client(max_concurrent_generations=1, max_queued_generations=0)
    app = client.app

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *[
                    http.post(
                        "/v1/ask", json={"question": "What is overfitting?", "stream": stream}
                    )
                    for _ in range(3)
                ]
            )

    responses = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 503, 503], statuses
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert all(r.json()["error"]["code"] == "capacity_exhausted" for r in refused)
    assert app.state.services.gate.admitted == 0
    assert fake_rag.max_active == 1
