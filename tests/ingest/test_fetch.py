"""Tests of source resolution: local files, the offline mirror, and the polite crawler
against a loopback HTTP server started by the tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import ingest.fetch as fetch_module
from ingest.fetch import (
    RawSource,
    SourceFailure,
    check_url_allowed,
    extract_links,
    resolve_sources,
)
from ingest.sources import SourceSpec, load_sources
from rag.config import Settings
from rag.errors import ConfigError, InvalidInputError
from tests.conftest import LINKED, ML_PAGE, REPO_ROOT

# --- a small site on 127.0.0.1 -------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str | None = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    sleep_s: float = 0.0
    send_length: bool = True


def html(*hrefs: str) -> Route:
    links = "".join(f'<a href="{h}">link</a>\n' for h in hrefs)
    return Route(f"<html><body><h1>Page</h1>\n{links}</body></html>".encode())


def redirect(location: str, status: int = 302) -> Route:
    return Route(status=status, content_type=None, headers={"Location": location})


class Site:
    """A loopback web server whose routes a test can change; records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, float]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append((self.path, time.monotonic()))
                route = site.routes.get(self.path, Route(b"missing", status=404))
                try:
                    if route.sleep_s:
                        time.sleep(route.sleep_s)
                    self.send_response(route.status)
                    if route.content_type:
                        self.send_header("Content-Type", route.content_type)
                    for key, value in route.headers.items():
                        self.send_header(key, value)
                    if route.send_length:
                        self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout, size cap): expected

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return self.base + path

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    server.routes.update(
        {
            "/robots.txt": Route(
                b"User-agent: *\nDisallow: /docs/private/\n", content_type="text/plain"
            ),
            "/docs/index.html": html(
                "page1.html",
                "page1.html#section",
                "/docs/page2.html",
                "private/secret.html",
                "http://offsite.invalid/docs/x.html",
                "/outside/other.html",
                "mailto:someone@example.org",
                "picture.png",
                "#top",
            ),
            "/docs/page1.html": html("deep/leaf.html", "index.html", "page2.html"),
            "/docs/page2.html": html("page1.html"),
            "/docs/deep/leaf.html": html("../index.html"),
            "/docs/private/secret.html": html(),
            "/outside/other.html": html(),
            "/docs/picture.png": Route(b"\x89PNG", content_type="image/png"),
        }
    )
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def fast(tmp_path: Path) -> Settings:
    """Settings for the crawler tests: no polite delay, short timeout, small size cap."""
    return Settings(
        data_dir=tmp_path / "data",
        torch_threads=1,
        fetch_delay_s=0,
        fetch_timeout_s=2.0,
        fetch_max_bytes=10_000,
    )


def url_spec(url: str, depth: int = 0, **kwargs: object) -> SourceSpec:
    return SourceSpec(kind="url", location=url, depth=depth, **kwargs)  # type: ignore[arg-type]


def resolve(
    specs: list[SourceSpec], settings: Settings, tmp_path: Path, **kwargs: object
) -> tuple[list[RawSource], list[SourceFailure]]:
    results = list(resolve_sources(specs, base_dir=tmp_path, settings=settings, **kwargs))  # type: ignore[arg-type]
    sources = [r for r in results if isinstance(r, RawSource)]
    failures = [r for r in results if isinstance(r, SourceFailure)]
    assert len(sources) + len(failures) == len(results)
    return sources, failures


# --- crawling ------------------------------------------------------------------------------


def test_depth_0_fetches_only_the_page(site: Site, fast: Settings, tmp_path: Path) -> None:
    spec = url_spec(site.url("/docs/index.html"), title="Index", topic="demo")
    sources, failures = resolve([spec], fast, tmp_path)
    assert failures == []
    (page,) = sources
    assert page.doc_id == f"url:{site.url('/docs/index.html')}"
    assert (page.url, page.title, page.topic) == (site.url("/docs/index.html"), "Index", "demo")
    assert page.content_type == "text/html" and page.name == "/docs/index.html"
    assert b"<h1>Page</h1>" in page.data
    assert site.paths() == ["/robots.txt", "/docs/index.html"]


def test_depth_1_follows_in_scope_links_once(site: Site, fast: Settings, tmp_path: Path) -> None:
    spec = url_spec(site.url("/docs/index.html"), depth=1, topic="demo", metadata={"license": "X"})
    sources, failures = resolve([spec], fast, tmp_path)
    assert [s.url for s in sources] == [
        site.url("/docs/index.html"),
        site.url("/docs/page1.html"),
        site.url("/docs/page2.html"),
    ]
    crawled = sources[1]
    assert crawled.doc_id == f"url:{site.url('/docs/page1.html')}"
    assert crawled.title is None and crawled.topic == "demo"
    assert crawled.metadata == {"license": "X", "crawled_from": spec.location}
    # robots.txt forbids the private page: reported, never requested
    assert [(f.source, f.error) for f in failures] == [
        (site.url("/docs/private/secret.html"), "disallowed by robots.txt")
    ]
    paths = site.paths()
    assert paths.count("/robots.txt") == 1
    assert len(paths) == len(set(paths))  # no page twice
    for never in ("/docs/private/secret.html", "/outside/other.html", "/docs/picture.png"):
        assert never not in paths
    assert not any("offsite" in s.url for s in sources)


def test_depth_2_reaches_nested_pages(site: Site, fast: Settings, tmp_path: Path) -> None:
    sources, _ = resolve([url_spec(site.url("/docs/index.html"), depth=2)], fast, tmp_path)
    urls = [s.url for s in sources]
    assert urls[-1] == site.url("/docs/deep/leaf.html")
    assert len(urls) == len(set(urls)) == 4


def test_depth_argument_overrides_spec(site: Site, fast: Settings, tmp_path: Path) -> None:
    start = site.url("/docs/index.html")
    deep, _ = resolve([url_spec(start, depth=0)], fast, tmp_path, depth=2)
    assert len(deep) == 4
    shallow, _ = resolve([url_spec(start, depth=2)], fast, tmp_path, depth=0)
    assert [s.url for s in shallow] == [start]


def test_crawl_page_limit(site: Site, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, fetch_delay_s=0, fetch_max_pages=2)
    sources, _ = resolve([url_spec(site.url("/docs/index.html"), depth=2)], settings, tmp_path)
    assert len(sources) == 2


def test_start_in_subfolder_limits_scope(site: Site, fast: Settings, tmp_path: Path) -> None:
    # leaf links to ../index.html, which is outside /docs/deep/
    sources, failures = resolve(
        [url_spec(site.url("/docs/deep/leaf.html"), depth=3)], fast, tmp_path
    )
    assert [s.url for s in sources] == [site.url("/docs/deep/leaf.html")] and failures == []


def test_404_is_a_failure_and_others_continue(site: Site, fast: Settings, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    specs = [url_spec(site.url("/docs/gone.html")), SourceSpec(kind="path", location="notes.txt")]
    sources, failures = resolve(specs, fast, tmp_path)
    assert [(f.source, f.error) for f in failures] == [
        (site.url("/docs/gone.html"), "HTTP 404 Not Found")
    ]
    assert [s.data for s in sources] == [b"hello"]


def test_timeout_is_a_failure(site: Site, tmp_path: Path) -> None:
    site.routes["/docs/slow.html"] = Route(b"late", sleep_s=1.5)
    settings = Settings(data_dir=tmp_path, fetch_delay_s=0, fetch_timeout_s=0.2)
    started = time.monotonic()
    sources, failures = resolve([url_spec(site.url("/docs/slow.html"))], settings, tmp_path)
    assert sources == []
    assert failures[0].error.startswith("timed out after 0.2s")
    assert time.monotonic() - started < 1.4


@pytest.mark.parametrize("send_length", [True, False])
def test_oversized_body_is_a_failure(
    site: Site, fast: Settings, tmp_path: Path, send_length: bool
) -> None:
    body = b"<p>" + b"x" * 50_000 + b"</p>"
    site.routes["/docs/big.html"] = Route(body, send_length=send_length)
    _, failures = resolve([url_spec(site.url("/docs/big.html"))], fast, tmp_path)
    assert len(failures) == 1 and failures[0].error.startswith("too large")
    assert "10000" in failures[0].error


def test_unsupported_content_type_is_a_failure(site: Site, fast: Settings, tmp_path: Path) -> None:
    site.routes["/docs/blob"] = Route(b"\x00\x01", content_type="application/octet-stream")
    site.routes["/docs/notes.md"] = Route(b"# Notes", content_type="text/markdown; charset=utf-8")
    specs = [url_spec(site.url("/docs/blob")), url_spec(site.url("/docs/notes.md"))]
    sources, failures = resolve(specs, fast, tmp_path)
    assert [f.error for f in failures] == ["unsupported content type application/octet-stream"]
    assert [(s.content_type, s.data) for s in sources] == [("text/markdown", b"# Notes")]


def test_redirect_to_another_path(site: Site, fast: Settings, tmp_path: Path) -> None:
    site.routes["/docs/old.html"] = redirect("/docs/page2.html", status=301)
    spec = url_spec(site.url("/docs/old.html"), title="Moved")
    sources, failures = resolve([spec], fast, tmp_path)
    assert failures == []
    (page,) = sources
    assert page.doc_id == f"url:{site.url('/docs/old.html')}"  # stable id from the spec
    assert page.url == site.url("/docs/page2.html")  # citations link where the page lives
    assert page.title == "Moved" and b"page1.html" in page.data


def test_crawl_from_a_redirected_start(site: Site, fast: Settings, tmp_path: Path) -> None:
    site.routes["/moved/start.html"] = redirect("/docs/index.html")
    sources, _ = resolve([url_spec(site.url("/moved/start.html"), depth=1)], fast, tmp_path)
    assert [s.url for s in sources] == [
        site.url("/docs/index.html"),
        site.url("/docs/page1.html"),
        site.url("/docs/page2.html"),
    ]


def test_crawled_redirect_out_of_scope_is_not_followed(
    site: Site, fast: Settings, tmp_path: Path
) -> None:
    site.routes["/docs/page2.html"] = html("away.html")
    site.routes["/docs/away.html"] = redirect("/outside/other.html")
    sources, failures = resolve([url_spec(site.url("/docs/page2.html"), depth=1)], fast, tmp_path)
    assert len(sources) == 1
    assert failures == [
        SourceFailure(
            site.url("/docs/away.html"),
            f"redirected out of the crawl's scope to {site.url('/outside/other.html')}",
        )
    ]
    assert "/outside/other.html" not in site.paths()


def test_redirect_loop_is_a_failure(site: Site, fast: Settings, tmp_path: Path) -> None:
    site.routes["/docs/loop.html"] = redirect("/docs/loop.html")
    _, failures = resolve([url_spec(site.url("/docs/loop.html"))], fast, tmp_path)
    assert failures[0].error == "too many redirects (more than 5)"
    assert site.paths().count("/docs/loop.html") == 6


def test_robots_disallow_of_start_page(site: Site, fast: Settings, tmp_path: Path) -> None:
    spec = url_spec(site.url("/docs/private/secret.html"))
    sources, failures = resolve([spec], fast, tmp_path)
    assert sources == [] and failures == [SourceFailure(spec.location, "disallowed by robots.txt")]
    assert "/docs/private/secret.html" not in site.paths()


def test_missing_robots_allows_everything(site: Site, fast: Settings, tmp_path: Path) -> None:
    del site.routes["/robots.txt"]
    sources, failures = resolve([url_spec(site.url("/docs/private/secret.html"))], fast, tmp_path)
    assert len(sources) == 1 and failures == []


def test_robots_server_error_refuses_the_host(site: Site, fast: Settings, tmp_path: Path) -> None:
    site.routes["/robots.txt"] = Route(b"oops", status=503, content_type="text/plain")
    _, failures = resolve([url_spec(site.url("/docs/index.html"))], fast, tmp_path)
    assert failures[0].error.startswith("robots.txt unavailable (HTTP 503")
    assert "/docs/index.html" not in site.paths()


def test_polite_delay_between_requests(site: Site, tmp_path: Path) -> None:
    # Timed on the client side (when each request is sent): server-side arrival times
    # jitter on a loaded machine.
    sent: list[float] = []
    client = httpx.Client(event_hooks={"request": [lambda request: sent.append(time.monotonic())]})
    settings = Settings(data_dir=tmp_path, fetch_delay_s=0.2)
    with client:
        sources, _ = resolve(
            [url_spec(site.url("/docs/index.html"), depth=1)], settings, tmp_path, client=client
        )
    assert len(sources) == 3
    assert len(sent) == len(site.requests) == 4  # robots.txt + 3 pages
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert min(gaps) >= 0.2


def test_unreachable_host_fails_cleanly(fast: Settings, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "a.txt").write_text("still here", encoding="utf-8")
    specs = [
        url_spec(f"http://127.0.0.1:{port}/page.html"),
        SourceSpec(kind="path", location="a.txt"),
    ]
    sources, failures = resolve(specs, fast, tmp_path)
    assert failures[0].error.startswith("connection failed")
    assert "\n" not in failures[0].error
    assert [s.data for s in sources] == [b"still here"]


def test_malformed_url_spec_is_a_failure(fast: Settings, tmp_path: Path) -> None:
    sources, failures = resolve([url_spec("http://x.org:port/a")], fast, tmp_path)
    assert sources == [] and "bad port" in failures[0].error


def test_extract_links() -> None:
    page = """<html><head><base href="/root/"></head><body>
    <a href="a.html#x">A</a> <a href="a.html">A again</a> <a href="HTTP://Other.org:80/b">B</a>
    <a href="mailto:x@y.z">mail</a> <a href="javascript:void(0)">js</a> <a>no href</a>
    <area href="map.html"></body></html>"""
    assert extract_links(page, "http://site.org/docs/index.html") == [
        "http://site.org/root/a.html",
        "http://other.org/b",
        "http://site.org/root/map.html",
    ]


# --- URL safety ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/x",
        "http://169.254.1.1/latest/meta-data",
        "http://192.168.1.1/",
        "http://[::1]:8000/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
    ],
)
def test_check_url_allowed_refuses_non_public_hosts(url: str) -> None:
    with pytest.raises(InvalidInputError, match="non-public address"):
        check_url_allowed(url, allow_private=False)
    check_url_allowed(url, allow_private=True)  # the CLI may fetch anything


@pytest.mark.parametrize("url", ["ftp://example.org/file", "file:///etc/passwd", "http:///x"])
def test_check_url_allowed_refuses_bad_schemes_and_hosts(url: str) -> None:
    for allow_private in (True, False):
        with pytest.raises(InvalidInputError):
            check_url_allowed(url, allow_private=allow_private)


def test_check_url_allowed_accepts_public_address() -> None:
    check_url_allowed("https://93.184.216.34/page", allow_private=False)


def test_private_start_url_is_a_failure(site: Site, fast: Settings, tmp_path: Path) -> None:
    sources, failures = resolve(
        [url_spec(site.url("/docs/index.html"))], fast, tmp_path, allow_private=False
    )
    assert sources == [] and "non-public address 127.0.0.1" in failures[0].error
    assert site.paths() == []


def test_redirect_hop_to_loopback_is_checked(
    site: Site, fast: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the literal 127.0.0.1 is a public host so the start URL passes; the redirect
    # goes to "localhost", which still resolves (really) to loopback and must be refused.
    real = fetch_module._resolve_addresses

    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34"] if host == "127.0.0.1" else real(host, port)

    monkeypatch.setattr(fetch_module, "_resolve_addresses", resolver)
    site.routes["/docs/hop.html"] = redirect(f"http://localhost:{site.port}/docs/page2.html")
    spec = url_spec(site.url("/docs/hop.html"))

    sources, failures = resolve([spec], fast, tmp_path, allow_private=False)
    assert sources == []
    assert "refusing to fetch 'http://localhost" in failures[0].error
    assert "/docs/page2.html" not in site.paths()

    sources, failures = resolve([spec], fast, tmp_path, allow_private=True)
    assert failures == [] and sources[0].url == f"http://localhost:{site.port}/docs/page2.html"


# --- local files and the mirror ------------------------------------------------------------


def test_path_sources(tmp_path: Path, fast: Settings) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_bytes(b"# A")
    specs = [
        SourceSpec(kind="path", location="docs/a.md", title="A", topic="t", format="markdown"),
        SourceSpec(kind="path", location="docs", metadata={"url": "https://x.org/"}),
        SourceSpec(kind="path", location="missing.txt"),
        SourceSpec(kind="path", location="b.txt", metadata={"url": "https://x.org/b"}),
    ]
    (tmp_path / "b.txt").write_bytes(b"b")
    sources, failures = resolve(specs, fast, tmp_path)
    a, b = sources
    assert a == RawSource(
        doc_id="file:docs/a.md",
        source="docs/a.md",
        url="",
        title="A",
        topic="t",
        fmt="markdown",
        name="a.md",
        content_type=None,
        data=b"# A",
        metadata={},
    )
    assert b.url == "https://x.org/b"
    assert [f.source for f in failures] == ["docs", "missing.txt"]
    assert failures[0].error.startswith("is a directory")
    assert failures[1].error.startswith("file not found")


def test_real_sources_resolve_through_the_mirror(shared_corpus: Path, fast: Settings) -> None:
    sources_file = REPO_ROOT / "corpus" / "sources.toml"
    specs = load_sources(sources_file)
    results = list(
        resolve_sources(specs, base_dir=sources_file.parent, settings=fast, mirror=LINKED)
    )
    assert all(isinstance(r, RawSource) for r in results), [
        r for r in results if isinstance(r, SourceFailure)
    ]
    assert len(results) == 96
    page = results[0]
    assert isinstance(page, RawSource)
    assert page.data == ML_PAGE.read_bytes() and page.url == "" and page.fmt == "webtext"
    manifest = json.loads((LINKED / "MANIFEST.json").read_text(encoding="utf-8"))
    for raw, entry in zip(results[1:], manifest, strict=True):
        assert isinstance(raw, RawSource)
        assert raw.url == entry["url"] and raw.doc_id == f"url:{entry['url']}"
        assert raw.name == entry["path"]
        assert raw.data == (LINKED / entry["path"]).read_bytes() and raw.data
        assert raw.title == entry["title"] and raw.topic == entry["topic"]
        assert raw.metadata["license"] == entry["license"]
        assert raw.metadata["repo"] == entry["repo"]


def test_mirror_unknown_url_is_a_failure(
    shared_corpus: Path, fast: Settings, tmp_path: Path
) -> None:
    spec = url_spec("https://example.org/not-mirrored.html")
    sources, failures = resolve([spec], fast, tmp_path, mirror=LINKED)
    assert sources == [] and failures[0].error.startswith("not in mirror")


def test_mirror_lookup_normalises_urls(shared_corpus: Path, fast: Settings, tmp_path: Path) -> None:
    manifest = json.loads((LINKED / "MANIFEST.json").read_text(encoding="utf-8"))
    url = manifest[0]["url"].replace("https://", "HTTPS://") + "#intro"
    sources, failures = resolve([url_spec(url)], fast, tmp_path, mirror=LINKED)
    assert failures == [] and sources[0].name == manifest[0]["path"]


def test_mirror_without_manifest_raises(tmp_path: Path, fast: Settings) -> None:
    with pytest.raises(ConfigError, match="MANIFEST.json"):
        resolve_sources([], base_dir=tmp_path, settings=fast, mirror=tmp_path)


def test_mirror_path_cannot_escape(tmp_path: Path, fast: Settings) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    entries = [{"url": "https://x.org/a", "path": "../secret.txt"}]
    (mirror / "MANIFEST.json").write_text(json.dumps(entries), encoding="utf-8")
    _, failures = resolve([url_spec("https://x.org/a")], fast, tmp_path, mirror=mirror)
    assert failures[0].error.startswith("mirror path escapes")
