"""Graceful shutdown: on SIGTERM a real server process stops accepting connections, lets an
answer stream that is already running finish (within ``shutdown_grace_s``), then exits 0;
a stream longer than the grace is cut and the process still exits in time. Slack answers
already acknowledged get the same grace."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from tests.api.conftest import parse_sse
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.server

QUESTION = {"question": "What is overfitting?", "stream": True}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(tmp_path: Path, *, tokens: int, delay_s: float, grace_s: float):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.api.slow_server",
            str(port),
            str(tmp_path / "data"),
            str(tokens),
            str(delay_s),
            str(grace_s),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, port, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_sigterm_lets_a_running_stream_finish_then_exits_0(tmp_path, processes) -> None:
    grace_s = 15.0
    proc, port, base = _start(tmp_path, tokens=12, delay_s=0.25, grace_s=grace_s)
    processes.append(proc)
    text = ""
    signalled_at = None
    refused_meanwhile = None
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", base + "/v1/ask", json=QUESTION) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_text():
            text += chunk
            if signalled_at is None and "event: token" in text:
                proc.send_signal(signal.SIGTERM)
                signalled_at = time.monotonic()
            elif (
                signalled_at is not None
                and refused_meanwhile is None
                and time.monotonic() - signalled_at > 0.6
            ):
                # Mid-stream, after SIGTERM: new connections are no longer accepted.
                refused_meanwhile = _refuses_connections(port)
    events = parse_sse(text)
    assert signalled_at is not None
    assert events[-1][0] == "answer", events[-3:]
    assert events[-1][1]["text"].startswith("word0 word1")
    assert len([e for e in events if e[0] == "token"]) == 12
    assert refused_meanwhile is True
    assert proc.wait(timeout=grace_s) == 0
    assert time.monotonic() - signalled_at < grace_s


def test_a_stream_longer_than_the_grace_is_cut_and_the_process_exits(tmp_path, processes) -> None:
    grace_s = 1.0
    proc, _, base = _start(tmp_path, tokens=40, delay_s=0.5, grace_s=grace_s)  # a 20 s stream
    processes.append(proc)
    text = ""
    signalled_at = None
    with httpx.Client(timeout=30) as http:
        try:
            with http.stream("POST", base + "/v1/ask", json=QUESTION) as response:
                for chunk in response.iter_text():
                    text += chunk
                    if signalled_at is None and "event: token" in text:
                        proc.send_signal(signal.SIGTERM)
                        signalled_at = time.monotonic()
        except httpx.HTTPError:
            pass  # the server cut the stream: expected
    assert signalled_at is not None
    assert proc.wait(timeout=grace_s + 8) == 0
    assert time.monotonic() - signalled_at < grace_s + 8
    assert "event: answer" not in text


# --- Slack: acknowledged events are answered before the app stops --------------------------
def test_slack_answers_in_flight_finish_at_shutdown(make_client, fake_rag) -> None:
    from tests.api.test_slack import SECRET, TOKEN, FakeSlackAPI, mention, post_event

    api = FakeSlackAPI()
    try:
        fake_rag.ask_delay_s = 1.0
        client = make_client(
            slack_signing_secret=SecretStr(SECRET),
            slack_bot_token=SecretStr(TOKEN),
            slack_api_url=api.url,
            shutdown_grace_s=10.0,
        )
        assert post_event(client, mention("What is overfitting?")).status_code == 200
        client.__exit__(None, None, None)  # the app's shutdown
        assert len(api.posts()) == 1, "the acknowledged question got its answer before exit"
    finally:
        api.server.shutdown()


def test_slack_shutdown_wait_is_bounded(make_client, fake_rag, caplog) -> None:
    from tests.api.test_slack import SECRET, TOKEN, FakeSlackAPI, mention, post_event

    api = FakeSlackAPI()
    try:
        fake_rag.ask_delay_s = 2.5
        client = make_client(
            slack_signing_secret=SecretStr(SECRET),
            slack_bot_token=SecretStr(TOKEN),
            slack_api_url=api.url,
            shutdown_grace_s=0.5,
        )
        assert post_event(client, mention("What is overfitting?")).status_code == 200
        time.sleep(0.2)  # the listener has started
        started = time.monotonic()
        client.__exit__(None, None, None)
        assert time.monotonic() - started < 2.0
        assert "still running at shutdown" in caplog.text
        api.wait_posts(1)  # let the abandoned answer post before the fake Slack stops
    finally:
        api.server.shutdown()
