"""Turn source specs into raw bytes: local files, an offline mirror of URLs, or polite HTTP
fetching with an optional same-site crawl.

One bad source never stops the others: every problem becomes a :class:`SourceFailure` with a
one-line reason, and the iterator moves on.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

from ingest.sources import SourceSpec, doc_id_for, normalize_url
from rag.config import Settings
from rag.errors import ConfigError, InvalidInputError

log = logging.getLogger(__name__)

SUPPORTED_CONTENT_TYPES: frozenset[str] = frozenset(
    {"text/html", "text/plain", "text/markdown", "text/x-rst", "application/pdf"}
)
# Used only when a server sends no Content-Type at all: the loader detects from the name.
_KNOWN_SUFFIXES = (".html", ".htm", ".txt", ".md", ".markdown", ".rst", ".pdf")
# Links to these are never documents; skipping them saves a request each.
_SKIP_LINK_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".css", ".js", ".json",
    ".zip", ".gz", ".tgz", ".bz2", ".xz", ".whl", ".tar", ".mp4", ".webm", ".mp3",
    ".woff", ".woff2", ".ttf", ".ipynb",
)  # fmt: skip
REDIRECT_STATUSES: frozenset[int] = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class RawSource:
    """The bytes of one document plus what the loader needs to parse and cite it."""

    doc_id: str
    source: str
    url: str
    title: str | None
    topic: str
    fmt: str | None  # format hint (spec.format) or None — the loader detects
    name: str  # file name or URL path used for format detection
    content_type: str | None
    data: bytes
    metadata: dict[str, str]


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be read, with a one-line reason."""

    source: str
    error: str


# --- URL safety ----------------------------------------------------------------------------


def _resolve_addresses(host: str, port: int) -> list[str]:
    """Every IP address ``host`` resolves to (a seam tests replace)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _is_public(address: str) -> bool:
    """True for a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    blocked = (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )
    return ip.is_global and not blocked


def check_url_allowed(url: str, *, allow_private: bool) -> list[str]:
    """Refuse URLs that must not be fetched: a scheme other than http(s), no host, or —
    unless ``allow_private`` — a host resolving to a loopback, private, link-local, reserved
    or multicast address. Raises :class:`InvalidInputError`.

    Returns the addresses that were checked (empty with ``allow_private``): a fetch must
    connect to one of these, never resolve the name again (see :class:`PinnedBackend`)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise InvalidInputError(f"only http(s) URLs can be fetched, got {url!r}")
    host = parts.hostname
    if not host:
        raise InvalidInputError(f"URL has no host: {url!r}")
    if allow_private:
        return []
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise InvalidInputError(f"bad port in URL {url!r}") from exc
    try:
        addresses = _resolve_addresses(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInputError(f"cannot resolve host {host!r}: {exc}") from exc
    if not addresses:
        raise InvalidInputError(f"cannot resolve host {host!r}")
    for address in addresses:
        if not _is_public(address):
            raise InvalidInputError(
                f"refusing to fetch {url!r}: {host} resolves to non-public address {address}"
            )
    return addresses


# --- connecting to the checked address only -------------------------------------------------


def _open_tcp(
    address: str,
    port: int,
    timeout: float | None,
    local_address: str | None,
    socket_options: Any,
) -> httpcore.NetworkStream:
    """A TCP connection to an IP address (a seam tests replace to refuse outside connects)."""
    return httpcore.SyncBackend().connect_tcp(
        address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class PinnedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects only to addresses vetted by
    :func:`check_url_allowed`, never resolving a host name itself.

    Closes the DNS-rebinding hole: checking a name and letting httpx resolve it again to
    connect lets a name answer a public address to the check and 127.0.0.1 to the connect.
    TLS still runs on top of the pinned socket with the URL's host name (httpcore passes it
    as SNI and for certificate checks), and the Host header comes from the URL, so only
    the address changes."""

    def __init__(self) -> None:
        self._pins: dict[str, tuple[str, ...]] = {}

    @staticmethod
    def key(url: str) -> str:
        """The host as httpcore will ask for it (IDNA-encoded, lower case, no brackets)."""
        return httpx.URL(url).raw_host.decode("ascii").lower()

    def pin(self, url: str, addresses: list[str]) -> None:
        """Allow connections to ``url``'s host only at ``addresses`` (replacing earlier pins)."""
        self._pins[self.key(url)] = tuple(addresses)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        # An IP literal is its own (already checked) address: no name lookup can change it.
        addresses = (host,) if _is_ip_literal(host) else self._pins.get(host.lower(), ())
        if not addresses:
            raise httpcore.ConnectError(
                f"no checked address for host {host!r}; refusing to resolve it"
            )
        last: Exception | None = None
        for address in addresses:
            try:
                return _open_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """An httpx transport whose connections go through a :class:`PinnedBackend`."""

    def __init__(self, backend: PinnedBackend) -> None:
        super().__init__()
        self.backend = backend
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=backend
        )


# --- links ---------------------------------------------------------------------------------


class _LinkParser(HTMLParser):
    """Collects ``<a href>`` targets and the ``<base href>`` of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        href = values.get("href")
        if not href:
            return
        if tag == "base" and self.base is None:
            self.base = href.strip()
        elif tag in {"a", "area"}:
            self.hrefs.append(href.strip())


def extract_links(html: str, base_url: str) -> list[str]:
    """Absolute, normalised (fragment-free) http(s) links of an HTML page, in page order,
    without repeats."""
    parser = _LinkParser()
    parser.feed(html)
    parser.close()
    base = urljoin(base_url, parser.base) if parser.base else base_url
    links: list[str] = []
    seen: set[str] = set()
    for href in parser.hrefs:
        absolute = urljoin(base, href)
        if urlsplit(absolute).scheme.lower() not in {"http", "https"}:
            continue  # mailto:, javascript:, ...
        try:
            link = normalize_url(absolute)
        except (ConfigError, ValueError):
            continue  # malformed href: not worth a failure
        if link not in seen:
            seen.add(link)
            links.append(link)
    return links


@dataclass(frozen=True)
class _Scope:
    """Where a crawl may go: same scheme and host, under the start URL's folder — or under
    the folder the start URL redirected to (an http→https or moved start page)."""

    roots: tuple[tuple[str, str, str], ...]  # (scheme, netloc, folder prefix)

    @staticmethod
    def _root(url: str) -> tuple[str, str, str]:
        parts = urlsplit(normalize_url(url))
        return parts.scheme, parts.netloc, parts.path[: parts.path.rfind("/") + 1] or "/"

    @classmethod
    def of(cls, start_url: str, final_url: str) -> _Scope:
        """The scope of a crawl that started at ``start_url`` and landed on ``final_url``."""
        return cls(tuple(dict.fromkeys((cls._root(start_url), cls._root(final_url)))))

    def contains(self, url: str) -> bool:
        """True when ``url`` (normalised) lies under one of the scope's roots."""
        parts = urlsplit(url)
        return any(
            parts.scheme == scheme and parts.netloc == netloc and parts.path.startswith(prefix)
            for scheme, netloc, prefix in self.roots
        )


# --- HTTP ----------------------------------------------------------------------------------


class _FetchError(Exception):
    """A page could not be fetched; the message is the one-line reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of an error response, if any


@dataclass(frozen=True)
class _Page:
    url: str  # final URL after redirects
    content_type: str | None
    charset: str | None
    data: bytes


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def _describe(exc: httpx.HTTPError, timeout_s: float) -> str:
    """A one-line reason for a transport error."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout_s:g}s ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {_one_line(str(exc))}"
    return f"{type(exc).__name__}: {_one_line(str(exc))}"


class _Fetcher:
    """Polite GET with manual redirects (each hop checked), robots.txt, per-host delay, a
    size cap enforced while streaming and a content-type check."""

    def __init__(
        self,
        client: httpx.Client,
        settings: Settings,
        allow_private: bool,
        pins: PinnedBackend | None = None,
    ) -> None:
        self.client = client
        self.pins = pins  # where each hop's checked addresses go (None: the client's own DNS)
        self.settings = settings
        self.allow_private = allow_private
        self._robots: dict[str, RobotFileParser | str] = {}  # origin → parser or refusal
        self._last_request: dict[str, float] = {}  # netloc → monotonic time

    def fetch(self, url: str, scope: _Scope | None = None) -> _Page:
        """The page at ``url`` (redirects followed, but not out of ``scope`` when given);
        raises :class:`_FetchError`."""
        return self._follow(url, robots=True, check_type=True, scope=scope)

    # -- internals --------------------------------------------------------------------------

    def _follow(
        self, url: str, *, robots: bool, check_type: bool, scope: _Scope | None = None
    ) -> _Page:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            if scope is not None and not scope.contains(normalize_url(current)):
                raise _FetchError(f"redirected out of the crawl's scope to {current}")
            try:
                addresses = check_url_allowed(current, allow_private=self.allow_private)
            except InvalidInputError as exc:
                raise _FetchError(str(exc)) from exc
            if self.pins is not None:
                self.pins.pin(current, addresses)
            if robots:
                self._check_robots(current)
            location, page = self._get(current, check_type=check_type)
            if page is not None:
                return page
            assert location is not None
            current = urljoin(current, location)
        raise _FetchError(f"too many redirects (more than {MAX_REDIRECTS})")

    def _wait_politely(self, netloc: str) -> None:
        """Sleep until ``fetch_delay_s`` has passed since the last request to ``netloc``
        finished (measured from the end, so a slow host is not hit harder)."""
        delay = self.settings.fetch_delay_s
        last = self._last_request.get(netloc)
        if delay > 0 and last is not None:
            remaining = delay - (time.monotonic() - last)
            if remaining > 0:
                time.sleep(remaining)

    def _get(self, url: str, *, check_type: bool) -> tuple[str | None, _Page | None]:
        """One GET: ``(location, None)`` for a redirect, ``(None, page)`` otherwise."""
        timeout_s = self.settings.fetch_timeout_s
        cap = self.settings.fetch_max_bytes
        netloc = urlsplit(url).netloc.lower()
        self._wait_politely(netloc)
        started = time.monotonic()
        try:
            with self.client.stream(
                "GET",
                url,
                headers={"User-Agent": self.settings.user_agent},
                timeout=timeout_s,
                follow_redirects=False,
            ) as response:
                status = response.status_code
                if status in REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise _FetchError(f"HTTP {status} redirect without a Location header")
                    return location, None
                if status >= 400:
                    reason = response.reason_phrase or ""
                    raise _FetchError(f"HTTP {status} {reason}".strip(), status=status)
                content_type, charset = _parse_content_type(response.headers.get("content-type"))
                if check_type:
                    _check_content_type(content_type, url)
                length = response.headers.get("content-length")
                if length and length.isdigit() and int(length) > cap:
                    raise _FetchError(f"too large: {int(length)} bytes > limit {cap}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise _FetchError(f"too large: more than {cap} bytes")
                    # The read timeout is per socket read; this bounds the whole body too.
                    if time.monotonic() - started > timeout_s:
                        raise _FetchError(f"timed out after {timeout_s:g}s (body too slow)")
                    chunks.append(chunk)
                final_url = normalize_url(str(response.url))
                return None, _Page(final_url, content_type, charset, b"".join(chunks))
        except httpx.HTTPError as exc:
            raise _FetchError(_describe(exc, timeout_s)) from exc
        finally:
            self._last_request[netloc] = time.monotonic()

    def _check_robots(self, url: str) -> None:
        """Raise :class:`_FetchError` when robots.txt of ``url``'s origin forbids it."""
        parts = urlsplit(url)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        rules = self._robots.get(origin)
        if rules is None:
            rules = self._load_robots(origin)
            self._robots[origin] = rules
        if isinstance(rules, str):
            raise _FetchError(rules)
        if not rules.can_fetch(self.settings.user_agent, url):
            raise _FetchError("disallowed by robots.txt")

    def _load_robots(self, origin: str) -> RobotFileParser | str:
        """The parsed robots.txt of an origin, or a refusal reason (the same rules as
        :meth:`urllib.robotparser.RobotFileParser.read`)."""
        parser = RobotFileParser(origin + "/robots.txt")
        try:
            page = self._follow(origin + "/robots.txt", robots=False, check_type=False)
        except _FetchError as exc:
            if exc.status in {401, 403}:
                parser.disallow_all = True
            elif exc.status is not None and exc.status >= 500:
                return f"robots.txt unavailable ({exc})"
            else:
                # 404 and the like mean "no rules"; a transport error is reported by the
                # page request itself.
                parser.allow_all = True
            return parser
        parser.parse(page.data.decode(page.charset or "utf-8", errors="replace").splitlines())
        return parser


def _parse_content_type(header: str | None) -> tuple[str | None, str | None]:
    """``(media type, charset)`` of a Content-Type header, lower-cased."""
    if not header:
        return None, None
    media, *params = (part.strip() for part in header.split(";"))
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value:
            charset = value.strip().strip('"').lower()
    return media.lower() or None, charset


def _check_content_type(content_type: str | None, url: str) -> None:
    """Raise :class:`_FetchError` unless the page is a format the loaders read."""
    if content_type is None:
        if urlsplit(url).path.lower().endswith(_KNOWN_SUFFIXES):
            return
        raise _FetchError("no Content-Type and no recognisable file name")
    if content_type not in SUPPORTED_CONTENT_TYPES:
        raise _FetchError(f"unsupported content type {content_type}")


# --- sources -------------------------------------------------------------------------------


def load_mirror(mirror: Path) -> dict[str, dict[str, Any]]:
    """The mirror's manifest as ``{normalised url: entry}``; raises :class:`ConfigError`
    when ``MANIFEST.json`` is missing or malformed."""
    manifest_path = mirror / "MANIFEST.json"
    try:
        entries = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"mirror has no MANIFEST.json: {manifest_path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read mirror manifest {manifest_path}: {exc}") from exc
    if not isinstance(entries, list):
        raise ConfigError(f"{manifest_path}: expected a list of entries")
    by_url: dict[str, dict[str, Any]] = {}
    for number, entry in enumerate(entries, start=1):
        if not (isinstance(entry, dict) and entry.get("url") and entry.get("path")):
            raise ConfigError(f"{manifest_path}: entry #{number} needs 'url' and 'path'")
        by_url[normalize_url(str(entry["url"]))] = entry
    return by_url


def _make_client(allow_private: bool) -> tuple[httpx.Client, PinnedBackend | None]:
    """The crawler's HTTP client and, without ``allow_private``, the backend that pins every
    connection to the addresses the URL check vetted (proxy variables are then ignored: a
    proxy would resolve the name itself, out of reach of the check)."""
    if allow_private:
        return httpx.Client(follow_redirects=False), None
    backend = PinnedBackend()
    client = httpx.Client(
        follow_redirects=False, transport=PinnedTransport(backend), trust_env=False
    )
    return client, backend


def resolve_sources(
    specs: list[SourceSpec],
    *,
    base_dir: Path,
    settings: Settings,
    mirror: Path | None = None,
    depth: int | None = None,
    client: httpx.Client | None = None,
    allow_private: bool = True,
) -> Iterator[RawSource | SourceFailure]:
    """Read every spec, in order, yielding one :class:`RawSource` per document (a crawl
    yields one per page) or a :class:`SourceFailure` per source or page that failed.

    ``base_dir`` anchors relative paths; ``mirror`` maps URLs to local copies (no network);
    ``depth`` overrides each URL spec's link depth; ``client`` replaces the HTTP client;
    ``allow_private=False`` refuses URLs and redirect hops to non-public addresses and
    (with the default client) connects only to the addresses it checked. A ``client``
    given here is used as it is: its own transport decides where it connects.
    Raises :class:`ConfigError` at once when the mirror's manifest is unusable."""
    mirror_entries = load_mirror(mirror) if mirror is not None else None
    return _iterate(specs, base_dir, settings, mirror, mirror_entries, depth, client, allow_private)


def _iterate(
    specs: list[SourceSpec],
    base_dir: Path,
    settings: Settings,
    mirror: Path | None,
    mirror_entries: dict[str, dict[str, Any]] | None,
    depth: int | None,
    client: httpx.Client | None,
    allow_private: bool,
) -> Iterator[RawSource | SourceFailure]:
    own_client: httpx.Client | None = None
    fetcher: _Fetcher | None = None
    try:
        for spec in specs:
            if spec.kind == "path":
                yield _read_path(spec, base_dir)
                continue
            try:
                normalize_url(spec.location)
            except ConfigError as exc:  # specs built in code skip load_sources' checks
                yield SourceFailure(spec.location, str(exc))
                continue
            if mirror is not None and mirror_entries is not None:
                yield _read_mirrored(spec, mirror, mirror_entries)
            else:
                if fetcher is None:
                    pins = None
                    if client is None:
                        own_client, pins = _make_client(allow_private)
                        client = own_client
                    fetcher = _Fetcher(client, settings, allow_private, pins)
                spec_depth = spec.depth if depth is None else depth
                yield from _crawl(spec, fetcher, spec_depth, settings.fetch_max_pages)
    finally:
        if own_client is not None:
            own_client.close()


def _read_path(spec: SourceSpec, base_dir: Path) -> RawSource | SourceFailure:
    """A local file source."""
    path = Path(spec.location)
    if not path.is_absolute():
        path = base_dir / path
    try:
        if path.is_dir():
            return SourceFailure(spec.location, f"is a directory: {path}")
        data = path.read_bytes()
    except FileNotFoundError:
        return SourceFailure(spec.location, f"file not found: {path}")
    except OSError as exc:
        return SourceFailure(
            spec.location, f"cannot read {path}: {_one_line(exc.strerror or str(exc))}"
        )
    return RawSource(
        doc_id=doc_id_for(spec.location, base_dir),
        source=spec.location,
        url=spec.metadata.get("url", ""),
        title=spec.title,
        topic=spec.topic,
        fmt=spec.format,
        name=path.name,
        content_type=None,
        data=data,
        metadata=dict(spec.metadata),
    )


def _read_mirrored(
    spec: SourceSpec, mirror: Path, entries: dict[str, dict[str, Any]]
) -> RawSource | SourceFailure:
    """A URL source answered from the local mirror (links are not followed offline)."""
    entry = entries.get(normalize_url(spec.location))
    if entry is None:
        return SourceFailure(spec.location, f"not in mirror {mirror}")
    rel = str(entry["path"])
    path = (mirror / rel).resolve()
    if not path.is_relative_to(mirror.resolve()):
        return SourceFailure(spec.location, f"mirror path escapes the mirror: {rel}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return SourceFailure(
            spec.location, f"mirror file unreadable: {rel} ({_one_line(str(exc))})"
        )
    if spec.depth:
        log.info("mirror: not following links of %s (depth %d) offline", spec.location, spec.depth)
    skip = {"path", "url", "title", "topic"}
    metadata = {k: str(v) for k, v in entry.items() if k not in skip and v is not None}
    metadata["mirror_path"] = rel
    metadata.update(spec.metadata)
    return RawSource(
        doc_id=doc_id_for(spec.location),
        source=spec.location,
        url=spec.location,
        title=spec.title or entry.get("title"),
        topic=spec.topic or str(entry.get("topic", "")),
        fmt=spec.format,
        name=rel,
        content_type=None,
        data=data,
        metadata=metadata,
    )


def _crawl(
    spec: SourceSpec, fetcher: _Fetcher, depth: int, max_pages: int
) -> Iterator[RawSource | SourceFailure]:
    """The start page, then same-site pages under its folder, breadth-first to ``depth``."""
    start = normalize_url(spec.location)
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    seen: set[str] = {start}  # queued or fetched, requested and final URLs alike
    scope: _Scope | None = None
    fetched = 0
    while queue:
        url, level = queue.popleft()
        if fetched >= max_pages:
            log.warning("crawl of %s stopped at %d pages (fetch_max_pages)", start, max_pages)
            break
        fetched += 1
        label = spec.location if level == 0 else url
        try:
            page = fetcher.fetch(url, scope=scope)
        except _FetchError as exc:
            yield SourceFailure(label, _one_line(str(exc)))
            continue
        if level == 0:
            scope = _Scope.of(start, page.url)
        elif page.url != url and page.url in seen:
            continue  # redirected to a page already read
        seen.add(page.url)
        yield _page_source(spec, page, level)
        if level < depth and page.content_type == "text/html" and scope is not None:
            html = page.data.decode(page.charset or "utf-8", errors="replace")
            for link in extract_links(html, page.url):
                if link in seen or not scope.contains(link):
                    continue
                if urlsplit(link).path.lower().endswith(_SKIP_LINK_SUFFIXES):
                    continue
                seen.add(link)
                queue.append((link, level + 1))


def _page_source(spec: SourceSpec, page: _Page, level: int) -> RawSource:
    """A fetched page as a raw source: the start page keeps the spec's id and title, a crawled
    page gets its own id, no title, and the spec's topic."""
    start = level == 0
    metadata = dict(spec.metadata)
    if not start:
        metadata["crawled_from"] = spec.location
    return RawSource(
        doc_id=doc_id_for(spec.location) if start else doc_id_for(page.url),
        source=spec.location if start else page.url,
        url=page.url,
        title=spec.title if start else None,
        topic=spec.topic,
        fmt=spec.format if start else None,
        name=urlsplit(page.url).path,
        content_type=page.content_type,
        data=page.data,
        metadata=metadata,
    )
