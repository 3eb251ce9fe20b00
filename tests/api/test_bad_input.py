"""Bad input never gets a 500: malformed bodies on every POST route, malformed ingest URLs,
and Slack junk (refused on its signature before any parsing) all get a 4xx in the
``{"error": {"code", "message"}}`` shape."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest
from pydantic import SecretStr

from api.auth import hash_key
from tests.api.test_slack import SECRET, TOKEN, FakeSlackAPI, event_body, mention

ADMIN = "bad-input-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
MAX_BODY = 8192


def assert_error_shape(response: Any, *statuses: int) -> dict[str, Any]:
    """The response is one of ``statuses`` (any 4xx when none given) in the standard shape."""
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:300])
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    return body["error"]


@pytest.fixture
def slack_api():
    api = FakeSlackAPI()
    yield api
    api.server.shutdown()


@pytest.fixture
def full_client(make_client, slack_api):
    """Every route mounted: admin routes open to ADMIN, the Slack route configured."""
    return make_client(
        admin_key_hashes=[hash_key(ADMIN)],
        slack_signing_secret=SecretStr(SECRET),
        slack_bot_token=SecretStr(TOKEN),
        slack_api_url=slack_api.url,
        max_body_bytes=MAX_BODY,
    )


def post_routes(client: Any) -> set[str]:
    """POST routes of the app: those in its OpenAPI description plus hidden ones mounted on
    the app itself (the Slack route)."""
    app = client.app
    documented = {path for path, ops in app.openapi()["paths"].items() if "post" in ops}
    direct = {
        route.path for route in app.routes if "POST" in (getattr(route, "methods", None) or ())
    }
    return documented | direct


# Every POST route of the app; the test below fails when a new one is not listed here.
POST_ROUTES = [
    "/v1/search",
    "/v1/ask",
    "/v1/chat/completions",
    "/v1/ingest",
    "/v1/feedback",
    "/slack/events",
]

_NESTED_LISTS = b"[" * 3000 + b"]" * 3000
_NESTED_OBJECTS = b'{"a":' * 1300 + b"1" + b"}" * 1300
MALFORMED_BODIES: dict[str, bytes] = {
    "empty": b"",
    "invalid-json": b'{"question": ',
    "json-array": b"[1, 2, 3]",
    "json-string": b'"What is overfitting?"',
    "json-null": b"null",
    "wrong-types": json.dumps(
        {
            "question": 123,
            "query": {"a": 1},
            "messages": "hi",
            "sources": 7,
            "rating": True,
            "k": "five",
        }
    ).encode(),
    "huge": b'{"question": "' + b"x" * (MAX_BODY * 2) + b'"}',
    "deeply-nested-lists": _NESTED_LISTS,
    "deeply-nested-objects": _NESTED_OBJECTS,
    "deeply-nested-in-field": b'{"question": ' + _NESTED_LISTS + b"}",
    "control-characters": b'{"question": "what\x00is\x01this\x1b[31m"}',
    "non-utf8": b'{"question": "\xff\xfe\xfa overfitting"}',
    "lone-surrogate": b'{"question": "\\ud800"}',
}


def test_the_route_list_covers_every_post_route(full_client) -> None:
    assert post_routes(full_client) == set(POST_ROUTES)


@pytest.mark.parametrize("content_type", ["application/json", None])
@pytest.mark.parametrize("kind", sorted(MALFORMED_BODIES))
@pytest.mark.parametrize("route", POST_ROUTES)
def test_malformed_bodies_get_a_4xx_in_the_error_shape(
    full_client, fake_rag, caplog, route, kind, content_type
) -> None:
    caplog.set_level(logging.ERROR)
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    response = full_client.post(route, content=MALFORMED_BODIES[kind], headers=headers)
    error = assert_error_shape(response)
    if kind == "huge":
        assert response.status_code == 413 and error["code"] == "payload_too_large"
    elif route == "/slack/events":  # nothing here is signed
        assert response.status_code == 401 and error["code"] == "unauthorized"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert not [c for c in fake_rag.calls if c["op"] in ("ask", "stream")]


# --- ingest URLs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/",
        "http://[zz]/",
        "http://example.org:99999/",
        "http://example.org:port/",
        "http://exa mple.org/",
        "http://example.org/\x00",
        "http://example.org/\npath",
    ],
)
def test_malformed_ingest_urls_are_422(full_client, url) -> None:
    response = full_client.post(
        "/v1/ingest", json={"sources": [{"kind": "url", "location": url}]}, headers=AUTH
    )
    error = assert_error_shape(response, 422)
    assert error["code"] == "validation_error" and "sources.0" in error["message"]


def test_source_checks_run_off_the_event_loop(full_client, monkeypatch) -> None:
    """A slow DNS lookup inside check_source must not block the event loop."""
    import api.routes.ingest
    from rag.errors import InvalidInputError

    seen: list[bool] = []

    def recording_check(source: Any, roots: Any, allow_private: bool) -> Any:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        raise InvalidInputError("refused by the test")

    monkeypatch.setattr(api.routes.ingest, "check_source", recording_check)
    response = full_client.post(
        "/v1/ingest",
        json={"sources": [{"kind": "url", "location": "https://example.org/"}]},
        headers=AUTH,
    )
    assert_error_shape(response, 400)
    assert seen == [False], "check_source ran on the event loop thread"


# --- Slack: signature first, then parsing -------------------------------------------------------
def sign_bytes(body: bytes, timestamp: str | None = None, secret: str = SECRET) -> dict[str, str]:
    """Slack's signature over raw bytes (slack_sdk's helper only signs text)."""
    ts = timestamp or str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + digest.hexdigest()}


GOOD_EVENT = event_body(mention("What is overfitting?")).encode()
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(b"\xff\xfe\x00junk", {"Content-Type": "application/json"}, id="non-utf8"),
        pytest.param(
            GOOD_EVENT,
            {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=" + "0" * 64},
            id="non-numeric-timestamp",
        ),
        pytest.param(
            GOOD_EVENT,
            {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=" + "0" * 64},
            id="huge-timestamp",
        ),
        pytest.param(
            GOOD_EVENT,
            {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": b"v0=\xe9"},
            id="non-ascii-signature",
        ),
        pytest.param(b"{not json", {"Content-Type": "application/json"}, id="invalid-json"),
        pytest.param(b"[1, 2]", {"Content-Type": "application/json"}, id="json-array"),
        pytest.param(b"payload=%7Bnot+json", {"Content-Type": FORM}, id="bad-form-payload"),
        pytest.param(
            GOOD_EVENT,
            {**sign_bytes(GOOD_EVENT, secret="wrong-secret"), "Content-Type": "application/json"},
            id="wrong-secret",
        ),
    ],
)
def test_unsigned_slack_junk_is_401_in_the_error_shape(
    full_client, slack_api, caplog, body, headers
) -> None:
    caplog.set_level(logging.WARNING)
    response = full_client.post("/slack/events", content=body, headers=headers)
    error = assert_error_shape(response, 401)
    assert error["code"] == "unauthorized"
    assert not [r for r in caplog.records if r.exc_info], "no traceback for junk"
    time.sleep(0.2)
    assert slack_api.posts() == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"{not json", "application/json", id="invalid-json"),
        pytest.param(b"[1, 2]", "application/json", id="json-array"),
        pytest.param(b'"text"', "application/json", id="json-string"),
        pytest.param(b"payload=%7Bnot+json", FORM, id="bad-form-payload"),
        pytest.param(b"payload=%5B1%2C2%5D", FORM, id="form-payload-array"),
        pytest.param(b'{"type": "event_callback", "event": "x"}', "application/json", id="odd"),
        pytest.param(
            b'{"type": "event_callback", "event": {"type": 7}, "authorizations": 3}',
            "application/json",
            id="odd-types",
        ),
        pytest.param(b"\xff\xfe\x00junk", "application/json", id="signed-non-utf8"),
    ],
)
def test_signed_but_malformed_slack_bodies_are_4xx_never_500(
    full_client, slack_api, body, content_type
) -> None:
    headers = {**sign_bytes(body), "Content-Type": content_type}
    response = full_client.post("/slack/events", content=body, headers=headers)
    error = assert_error_shape(response)
    if body.startswith(b"\xff"):
        assert response.status_code == 401  # Slack signs text; these bytes cannot be verified
    elif b"event_callback" not in body:
        assert response.status_code == 400 and error["code"] == "bad_request"
    time.sleep(0.2)
    assert slack_api.posts() == []


def test_signed_good_event_still_works(full_client, slack_api) -> None:
    headers = {**sign_bytes(GOOD_EVENT), "Content-Type": "application/json"}
    assert full_client.post("/slack/events", content=GOOD_EVENT, headers=headers).status_code == 200
    assert len(slack_api.wait_posts(1)) == 1
