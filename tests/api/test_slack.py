"""The Slack bot over the HTTP Events API, against a loopback fake of Slack's Web API that
records every call the bot makes."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

SECRET = "slack-signing-secret-for-tests"
TOKEN = "xoxb-test-token"


class FakeSlackAPI:
    """A tiny Slack Web API on 127.0.0.1 recording (method, params) of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._ts = 1700000100
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                method = self.path.rsplit("/", 1)[-1]
                with api._lock:
                    api.calls.append((method, params))
                    api._ts += 1
                    ts = f"{api._ts}.000200"
                if method == "auth.test":
                    reply = {
                        "ok": True,
                        "user_id": "UBOT",
                        "bot_id": "BBOT",
                        "team_id": "T1",
                        "user": "mlrag",
                        "url": "https://x.slack.com/",
                    }
                elif method == "chat.postMessage":
                    reply = {
                        "ok": True,
                        "channel": params.get("channel"),
                        "ts": ts,
                        "message": {"text": params.get("text")},
                    }
                else:
                    reply = {"ok": True}
                body = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [params for method, params in self.calls if method == "chat.postMessage"]

    def wait_posts(self, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.posts()) < n:
            time.sleep(0.02)
        time.sleep(0.3)  # anything extra (a duplicate reply) would arrive now
        return self.posts()


@pytest.fixture
def slack_api():
    api = FakeSlackAPI()
    yield api
    api.server.shutdown()


@pytest.fixture
def slack_client(make_client, slack_api):
    def build(rag: Any = None):
        return make_client(
            rag=rag,
            slack_signing_secret=_secret(SECRET),
            slack_bot_token=_secret(TOKEN),
            slack_api_url=slack_api.url,
        )

    return build


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)


def signed(
    body: str,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": content_type,
    }


def event_body(event: dict[str, Any], event_id: str = "Ev001") -> str:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": "T1",
            "api_app_id": "A1",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
        }
    )


def mention(
    text: str, ts: str = "1700000000.000100", thread_ts: str | None = None
) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@UBOT> {text}",
        "ts": ts,
        "channel": "C1",
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def post_event(
    client, event: dict[str, Any], event_id: str = "Ev001", headers: dict[str, str] | None = None
):
    body = event_body(event, event_id)
    return client.post("/slack/events", content=body, headers={**signed(body), **(headers or {})})


def test_no_route_without_a_signing_secret(client) -> None:
    assert client.post("/slack/events", content="{}").status_code == 404


def test_start_up_makes_no_call_to_slack(slack_client, slack_api) -> None:
    client = slack_client()
    assert client.get("/health").status_code == 200
    assert slack_api.calls == []


def test_url_verification_echoes_the_challenge(slack_client) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "abc123", "token": "t"})
    response = slack_client().post("/slack/events", content=body, headers=signed(body))
    assert response.status_code == 200 and "abc123" in response.text


@pytest.mark.parametrize("problem", ["bad-signature", "missing", "stale", "wrong-secret"])
def test_unsigned_or_stale_requests_are_rejected(slack_client, slack_api, problem) -> None:
    client = slack_client()
    body = event_body(mention("What is overfitting?"))
    if problem == "bad-signature":
        headers = {**signed(body), "X-Slack-Signature": "v0=" + "0" * 64}
    elif problem == "missing":
        headers = {"Content-Type": "application/json"}
    elif problem == "stale":
        headers = signed(body, timestamp=int(time.time()) - 600)
    else:
        headers = signed(body, secret="not-the-secret")
    response = client.post("/slack/events", content=body, headers=headers)
    assert response.status_code in (401, 403)
    time.sleep(0.3)
    assert slack_api.posts() == []


def test_mention_gets_one_threaded_reply_with_sources(slack_client, slack_api, fake_rag) -> None:
    client = slack_client()
    response = post_event(client, mention("What is overfitting?"))
    assert response.status_code == 200
    posts = slack_api.wait_posts(1)
    assert len(posts) == 1
    reply = posts[0]
    assert reply["channel"] == "C1" and reply["thread_ts"] == "1700000000.000100"
    assert reply["text"].startswith("Overfitting is learning noise [1].")
    assert (
        "*Sources*" in reply["text"]
        and "<https://example.org/overfitting|Overfitting>" in reply["text"]
    )
    assert "> Overfitting happens when a model learns the noise" in reply["text"]
    assert reply["blocks"] and reply["blocks"][0]["type"] == "section"
    assert fake_rag.calls[-1]["question"] == "What is overfitting?"


def test_ack_is_immediate_and_the_answer_follows(slack_client, slack_api, fake_rag) -> None:
    fake_rag.ask_delay_s = 1.5
    client = slack_client()
    started = time.monotonic()
    assert post_event(client, mention("What is overfitting?")).status_code == 200
    assert time.monotonic() - started < 1.0, (
        "Slack needs the ack within 3 s, long before the answer"
    )
    assert len(slack_api.wait_posts(1)) == 1


def test_retries_of_a_handled_event_are_dropped(slack_client, slack_api) -> None:
    client = slack_client()
    assert post_event(client, mention("What is overfitting?"), event_id="EvR").status_code == 200
    retry = post_event(
        client,
        mention("What is overfitting?"),
        event_id="EvR",
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    assert retry.status_code == 200
    assert len(slack_api.wait_posts(1)) == 1
    time.sleep(0.5)
    assert len(slack_api.posts()) == 1


def test_own_and_other_bots_messages_are_ignored(slack_client, slack_api, fake_rag) -> None:
    client = slack_client()
    own = {
        "type": "message",
        "channel_type": "im",
        "channel": "D1",
        "user": "UBOT",
        "bot_id": "BBOT",
        "text": "answer",
        "ts": "1.1",
    }
    other = {
        "type": "message",
        "channel_type": "im",
        "channel": "D1",
        "subtype": "bot_message",
        "bot_id": "BOTHER",
        "text": "hi",
        "ts": "1.2",
    }
    other_mention = {**mention("What is overfitting?", ts="1.3"), "bot_id": "BOTHER"}
    for i, event in enumerate((own, other, other_mention)):
        assert post_event(client, event, event_id=f"EvB{i}").status_code == 200
    time.sleep(1.0)
    assert slack_api.posts() == []
    assert not fake_rag.calls


def test_direct_messages_are_answered_in_thread(slack_client, slack_api) -> None:
    client = slack_client()
    dm = {
        "type": "message",
        "channel_type": "im",
        "channel": "D1",
        "user": "U1",
        "text": "What is overfitting?",
        "ts": "1700000001.000100",
    }
    channel_message = {**dm, "channel_type": "channel", "channel": "C9", "ts": "1700000001.000200"}
    post_event(client, dm, event_id="EvDM")
    post_event(client, channel_message, event_id="EvCH")
    posts = slack_api.wait_posts(1)
    assert (
        len(posts) == 1
        and posts[0]["channel"] == "D1"
        and posts[0]["thread_ts"] == "1700000001.000100"
    )


def test_follow_ups_in_a_thread_use_its_history(slack_client, slack_api, fake_rag) -> None:
    client = slack_client()
    post_event(client, mention("What is overfitting?", ts="1700000002.000100"), event_id="EvF1")
    slack_api.wait_posts(1)
    post_event(
        client,
        mention("How do I avoid it?", ts="1700000003.000100", thread_ts="1700000002.000100"),
        event_id="EvF2",
    )
    posts = slack_api.wait_posts(2)
    assert len(posts) == 2 and posts[1]["thread_ts"] == "1700000002.000100"
    history = fake_rag.calls[-1]["history"]
    assert [(t.role, t.content) for t in history] == [
        ("user", "What is overfitting?"),
        ("assistant", "Overfitting is learning noise [1]."),
    ]
    # A different thread starts fresh.
    post_event(client, mention("What is PCA?", ts="1700000004.000100"), event_id="EvF3")
    slack_api.wait_posts(3)
    assert fake_rag.calls[-1]["history"] is None


def test_abstention_says_so_without_sources(slack_client, slack_api, fake_rag) -> None:
    fake_rag.abstain = True
    post_event(slack_client(), mention("Best chocolate cake?"))
    reply = slack_api.wait_posts(1)[0]
    assert "could not find this in the documents" in reply["text"]
    assert "Sources" not in reply["text"] and "http" not in reply["text"]


def test_failures_still_get_exactly_one_reply(slack_client, slack_api, fake_rag) -> None:
    fake_rag.fail_after = 0
    post_event(slack_client(), mention("What is overfitting?"))
    posts = slack_api.wait_posts(1)
    assert len(posts) == 1 and "could not answer" in posts[0]["text"]


def test_slash_command_posts_the_question_and_answers_in_its_thread(
    slack_client, slack_api, fake_rag
) -> None:
    client = slack_client()
    body = urllib.parse.urlencode(
        {
            "token": "t",
            "team_id": "T1",
            "channel_id": "C7",
            "user_id": "U1",
            "command": "/askml",
            "text": "What is overfitting?",
            "response_url": slack_api.url + "respond",
            "trigger_id": "tr",
        }
    )
    started = time.monotonic()
    response = client.post(
        "/slack/events",
        content=body,
        headers=signed(body, content_type="application/x-www-form-urlencoded"),
    )
    assert response.status_code == 200 and time.monotonic() - started < 1.0
    posts = slack_api.wait_posts(2)
    assert len(posts) == 2
    question, answer = posts
    assert (
        question["channel"] == "C7"
        and "What is overfitting?" in question["text"]
        and "thread_ts" not in question
    )
    assert (
        answer["channel"] == "C7"
        and answer["thread_ts"]
        and answer["text"].startswith("Overfitting is learning noise")
    )
    assert fake_rag.calls[-1]["question"] == "What is overfitting?"


def test_real_pipeline_reply(slack_client, slack_api, real_rag) -> None:
    post_event(slack_client(rag=real_rag), mention("What is a random forest?"))
    reply = slack_api.wait_posts(1)[0]
    assert "<https://example.org/random-forest|Random forests>" in reply["text"]
