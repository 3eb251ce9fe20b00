"""Security headers on every response, and /docs served only from this host (and not at
all by default when API keys are configured)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from api.auth import hash_key

USER = "headers-user-key"
SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def assert_security_headers(response, *, cacheable: bool = False) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers)
    if cacheable:
        assert "no-store" not in response.headers.get("cache-control", "")
    else:
        assert response.headers.get("cache-control") == "no-store", (response.url, response.headers)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/health", None),
        ("GET", "/ready", None),
        ("GET", "/v1/config", None),
        ("GET", "/v1/sources", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/search", {"query": "overfitting"}),
        ("POST", "/v1/ask", {"question": "What is overfitting?"}),
        ("POST", "/v1/ask", {"question": "What is overfitting?", "stream": True}),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}]}),
        ("POST", "/v1/ask", {"question": 5}),  # 422
        ("GET", "/v1/nothing-here", None),  # 404
        ("DELETE", "/v1/ask", None),  # 405
    ],
)
def test_api_responses_carry_the_security_headers(client, method, path, body) -> None:
    response = client.request(method, path, json=body)
    assert_security_headers(response)


def test_errors_from_middleware_carry_them_too(make_client) -> None:
    client = make_client(max_body_bytes=1024)
    response = client.post("/v1/ask", content=b"x" * 5000)
    assert response.status_code == 413
    assert_security_headers(response)


def test_unauthorized_responses_carry_them(make_client) -> None:
    response = make_client(api_key_hashes=[hash_key(USER)]).post("/v1/search", json={"query": "q"})
    assert response.status_code == 401
    assert_security_headers(response)


def test_the_chat_page_keeps_its_csp_and_static_files_stay_cacheable(client) -> None:
    page = client.get("/")
    assert_security_headers(page)
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert_security_headers(script, cacheable=True)


# --- /docs -----------------------------------------------------------------------------------
class _Refs(HTMLParser):
    """Every src/href/data-* URL of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts: int = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if value and (name in ("src", "href") or name.endswith("-url")):
                self.refs.append(value)


def page_refs(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    return parser


_OTHER_HOST = re.compile(r"(?i)(https?:)?//[a-z0-9]")


def assert_only_this_host(response) -> None:
    csp = response.headers["content-security-policy"]
    assert not _OTHER_HOST.search(csp), csp
    assert "'unsafe-eval'" not in csp and "script-src 'self'" in csp
    refs = page_refs(response.text).refs
    assert refs, "the page references its assets"
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
    assert not _OTHER_HOST.search(response.text), "no URL of another host in the page"


def test_docs_load_nothing_from_another_host(client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert_security_headers(docs)
    assert_only_this_host(docs)
    init = client.get("/docs/init.js")
    assert init.status_code == 200 and not _OTHER_HOST.search(init.text)
    assert "validatorUrl: null" in init.text  # else a badge image loads from swagger.io
    for ref in page_refs(docs.text).refs:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert_security_headers(bundle, cacheable=True)
    # The bundle's own example page would load the Petstore from another host.
    assert client.get("/docs/assets/index.html").status_code == 404
    assert client.get("/docs/assets/swagger-initializer.js").status_code == 404
    assert client.get("/docs/assets/swagger-ui-bundle.js.map").status_code == 404
    assert client.get("/redoc").status_code == 404  # ReDoc has no local bundle
    assert client.get("/openapi.json").status_code == 200


def test_docs_without_the_swagger_package_link_the_openapi_json(make_client, monkeypatch) -> None:
    import api.docs

    monkeypatch.setattr(api.docs, "swagger_ui_dir", lambda: None)
    docs = make_client().get("/docs")
    assert docs.status_code == 200
    assert_only_this_host(docs)
    assert page_refs(docs.text).scripts == 0
    assert 'href="/openapi.json"' in docs.text


def test_docs_are_off_by_default_when_api_keys_are_set(make_client) -> None:
    keyed = make_client(api_key_hashes=[hash_key(USER)])
    for path in ("/docs", "/openapi.json", "/docs/init.js", "/docs/assets/swagger-ui.css"):
        assert keyed.get(path).status_code == 404, path


@pytest.mark.parametrize(
    ("keys", "setting", "served"),
    [
        (False, "auto", True),
        (True, "auto", False),
        (True, True, True),
        (False, False, False),
    ],
)
def test_docs_enabled_setting(make_client, keys, setting, served) -> None:
    client = make_client(api_key_hashes=[hash_key(USER)] if keys else [], docs_enabled=setting)
    assert (client.get("/docs").status_code == 200) is served
    assert (client.get("/openapi.json").status_code == 200) is served
