"""SSRF through DNS rebinding: a fetch connects only to the address its URL check vetted.

Every server here listens on loopback, and no test connects anywhere else: "public"
addresses handed out by the fake resolvers are either refused by a fake connect or stand
for 127.0.0.1 (with ``_is_public`` patched to accept it)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import pytest

import ingest.fetch as fetch_module
from rag.config import Settings
from tests.ingest.test_fetch import Route, Site, html, redirect, resolve, url_spec

PUBLIC = "93.184.216.34"  # handed out by fake resolvers only, never connected to


class CountingServer:
    """A server that must never be reached: counts requests (and answers a page)."""

    def __init__(self, host: str, port: int) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = b"<html><body>internal secret</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    server.routes["/robots.txt"] = Route(b"User-agent: *\n", content_type="text/plain")
    server.routes["/docs/index.html"] = html("page1.html")
    server.routes["/docs/page2.html"] = html()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def fast(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", fetch_delay_s=0, fetch_timeout_s=2.0)


@pytest.fixture
def evil(site: Site) -> Iterator[CountingServer]:
    """A second loopback address on the site's port: where a re-resolved name would land."""
    try:
        server = CountingServer("127.0.0.2", site.port)
    except OSError as exc:  # pragma: no cover - a host without the whole 127/8 on lo
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    yield server
    server.close()


def _fake_getaddrinfo(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Make ``socket.getaddrinfo`` answer the given names with successive addresses (the
    last one repeats); other names resolve for real."""
    real = socket.getaddrinfo
    calls: dict[str, int] = {}

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return real(host, port, *args, **kwargs)
        n = calls.get(name, 0)
        calls[name] = n + 1
        address = answers[name][min(n, len(answers[name]) - 1)]
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_name_rebound_to_loopback_is_never_fetched(
    site: Site, fast: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name answers a public address once (the URL check), then 127.0.0.1 (what a
    # second lookup by httpx would get). The public address must not be connected to for
    # real, so the connect seam records and refuses it.
    _fake_getaddrinfo(monkeypatch, {"rebind.test": [PUBLIC, "127.0.0.1"]})
    connects: list[str] = []

    def refuse(address: str, port: int, *args: object) -> httpcore.NetworkStream:
        connects.append(address)
        raise httpcore.ConnectError(f"test: no route to {address}")

    monkeypatch.setattr(fetch_module, "_open_tcp", refuse, raising=False)
    url = f"http://rebind.test:{site.port}/docs/index.html"

    sources, failures = resolve([url_spec(url)], fast, tmp_path, allow_private=False)

    assert sources == [] and len(failures) == 1
    assert site.paths() == []  # loopback never reached, robots.txt included
    assert connects and set(connects) == {PUBLIC}  # only the vetted address was tried


@pytest.mark.parametrize("redirected", [False, True])
def test_connection_goes_to_the_checked_address_with_the_name_kept(
    site: Site,
    evil: CountingServer,
    fast: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redirected: bool,
) -> None:
    # The URL check sees 127.0.0.1 (treated as public here); any other lookup of the name
    # answers 127.0.0.2, where the counting server listens. Pinning means the page comes
    # from 127.0.0.1 with the Host header still naming the host; every redirect hop alike.
    names = ("pinned.test", "hop.test")
    real_resolve = fetch_module._resolve_addresses
    monkeypatch.setattr(
        fetch_module,
        "_resolve_addresses",
        lambda host, port: ["127.0.0.1"] if host in names else real_resolve(host, port),
    )
    monkeypatch.setattr(fetch_module, "_is_public", lambda address: address == "127.0.0.1")
    _fake_getaddrinfo(monkeypatch, {name: ["127.0.0.2"] for name in names})
    hosts: list[str] = []
    real_handler = site.server.RequestHandlerClass

    class HostRecorder(real_handler):  # type: ignore[misc,valid-type]
        def do_GET(self) -> None:
            hosts.append(self.headers.get("Host", ""))
            super().do_GET()

    site.server.RequestHandlerClass = HostRecorder
    site.routes["/docs/hop.html"] = redirect(f"http://hop.test:{site.port}/docs/page2.html")
    start = "/docs/hop.html" if redirected else "/docs/index.html"
    url = f"http://pinned.test:{site.port}{start}"

    sources, failures = resolve([url_spec(url)], fast, tmp_path, allow_private=False)

    assert failures == [] and len(sources) == 1
    assert evil.requests == []
    final = "/docs/page2.html" if redirected else "/docs/index.html"
    assert final in site.paths()
    assert f"pinned.test:{site.port}" in hosts
    if redirected:
        assert sources[0].url == f"http://hop.test:{site.port}/docs/page2.html"
        assert hosts[-1] == f"hop.test:{site.port}"


def test_allow_private_keeps_the_plain_client(site: Site, fast: Settings, tmp_path: Path) -> None:
    # The CLI (allow_private) may fetch from loopback by name, as before.
    url = f"http://localhost:{site.port}/docs/index.html"
    sources, failures = resolve([url_spec(url)], fast, tmp_path, allow_private=True)
    assert failures == [] and len(sources) == 1


def test_unpinned_host_is_refused_by_the_backend() -> None:
    backend = fetch_module.PinnedBackend()
    with pytest.raises(httpcore.ConnectError, match="no checked address"):
        backend.connect_tcp("unchecked.test", 80)
