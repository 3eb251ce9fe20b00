"""API keys, admin routes, rate limits, body and question limits, CORS, and logs without
secrets."""

from __future__ import annotations

import logging

import pytest

from api.auth import hash_key, key_matches
from api.limits import RateLimiter

USER, ADMIN = "user-key-0123456789", "admin-key-9876543210"


@pytest.fixture
def keyed(make_client):
    return make_client(api_key_hashes=[hash_key(USER)], admin_key_hashes=[hash_key(ADMIN)])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_key_hashes_are_compared_not_keys() -> None:
    assert key_matches(USER, [hash_key(USER)])
    assert key_matches(USER, [hash_key(USER).upper()])
    assert not key_matches(USER, [USER])  # a plain key in the settings never matches
    assert not key_matches(None, [hash_key(USER)])


@pytest.mark.parametrize("route", ["/v1/ask", "/v1/search", "/v1/chat/completions"])
def test_configured_keys_are_required_on_api_routes(keyed, route) -> None:
    body = {
        "/v1/ask": {"question": "q"},
        "/v1/search": {"query": "q"},
        "/v1/chat/completions": {"messages": [{"role": "user", "content": "q"}]},
    }[route]
    missing = keyed.post(route, json=body)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert keyed.post(route, json=body, headers=bearer("wrong")).status_code == 401
    assert keyed.post(route, json=body, headers={"Authorization": USER}).status_code == 401
    assert keyed.post(route, json=body, headers=bearer(USER)).status_code == 200
    assert keyed.post(route, json=body, headers=bearer(ADMIN)).status_code == 200


def test_get_routes_need_keys_too_but_probes_and_page_do_not(keyed) -> None:
    for path in ("/v1/config", "/v1/sources", "/metrics"):
        assert keyed.get(path).status_code == 401, path
        assert keyed.get(path, headers=bearer(USER)).status_code == 200, path
    for path in ("/health", "/ready", "/", "/static/app.js"):
        assert keyed.get(path).status_code == 200, path


def test_admin_routes_need_an_admin_key(keyed) -> None:
    body = {"sources": [{"kind": "url", "location": "http://127.0.0.1:9/x"}]}
    assert keyed.post("/v1/ingest", json=body).status_code == 401
    user = keyed.post("/v1/ingest", json=body, headers=bearer(USER))
    assert user.status_code == 403 and user.json()["error"]["code"] == "forbidden"
    assert keyed.get("/v1/feedback", headers=bearer(USER)).status_code == 403
    assert keyed.get("/v1/feedback", headers=bearer(ADMIN)).status_code == 200


def test_admin_routes_are_closed_without_admin_keys(client) -> None:
    response = client.post(
        "/v1/ingest", json={"sources": [{"kind": "url", "location": "http://example.org/"}]}
    )
    assert response.status_code == 403


def test_without_configured_keys_api_routes_are_open(client) -> None:
    assert client.post("/v1/ask", json={"question": "What is overfitting?"}).status_code == 200


def test_rate_limit_gives_429_with_retry_after(make_client) -> None:
    client = make_client(rate_limit_per_minute=3)
    statuses = [client.post("/v1/search", json={"query": "q"}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = client.post("/v1/search", json={"query": "q"})
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert client.get("/health").status_code == 200, "probes are not rate limited"


def test_rate_limit_is_per_key(make_client) -> None:
    other = "other-user-key-555"
    client = make_client(rate_limit_per_minute=2, api_key_hashes=[hash_key(USER), hash_key(other)])
    for _ in range(2):
        assert (
            client.post("/v1/search", json={"query": "q"}, headers=bearer(USER)).status_code == 200
        )
    assert client.post("/v1/search", json={"query": "q"}, headers=bearer(USER)).status_code == 429
    assert client.post("/v1/search", json={"query": "q"}, headers=bearer(other)).status_code == 200


def test_token_bucket_refills() -> None:
    limiter = RateLimiter(per_minute=60)
    for _ in range(60):
        assert limiter.try_acquire("c", now=100.0) == 0
    wait = limiter.try_acquire("c", now=100.0)
    assert wait == pytest.approx(1.0)
    assert limiter.try_acquire("c", now=101.01) == 0
    assert RateLimiter(per_minute=0).try_acquire("c") == 0  # off by default


def test_oversized_bodies_get_413(make_client) -> None:
    client = make_client(max_body_bytes=2048)
    big = {"question": "x" * 5000}
    response = client.post("/v1/ask", json=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit must still hold
        for _ in range(10):
            yield b"x" * 1000

    streamed = client.post(
        "/v1/ask", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_long_questions_are_refused_before_any_work(make_client, fake_rag) -> None:
    client = make_client(max_question_chars=50)
    response = client.post("/v1/ask", json={"question": "y" * 51})
    assert response.status_code == 400 and "limit is 50" in response.json()["error"]["message"]
    assert not fake_rag.calls


def test_cors_is_off_by_default_and_configurable(make_client) -> None:
    default = make_client()
    response = default.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    allowed = make_client(cors_origins=["https://app.example"])
    ok = allowed.options(
        "/v1/ask",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert (
        ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
    )
    other = allowed.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_keys_and_questions_are_not_logged(keyed, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    keyed.post("/v1/ask", json={"question": "my very private question"}, headers=bearer(USER))
    keyed.post("/v1/ask", json={"question": "q"}, headers=bearer("a-wrong-secret-key"))
    assert USER not in caplog.text and "a-wrong-secret-key" not in caplog.text
    assert hash_key(USER) not in caplog.text
    assert "my very private question" not in caplog.text


def test_error_bodies_never_leak_tracebacks(client, fake_rag, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(fake_rag, "search", boom)
    response = client.post("/v1/search", json={"query": "q"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }
