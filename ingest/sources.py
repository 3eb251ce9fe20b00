"""The sources file (``corpus/sources.toml``): which files and URLs make up the corpus.

Each ``[[source]]`` table names exactly one location, ``path`` (relative to the sources
file's folder) or ``url`` (absolute http(s)), plus optional ``title``, ``topic``, ``format``,
``depth`` (link-following depth, URLs only), provenance keys (``license``, ``repo``, ...)
and a free-form ``metadata`` table of strings.
"""

from __future__ import annotations

import os
import posixpath
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from rag.errors import ConfigError

# Provenance keys accepted at the top level of a [[source]] table; they land in metadata.
METADATA_KEYS: frozenset[str] = frozenset({"license", "repo", "repo_path", "commit", "note"})
SPEC_KEYS: frozenset[str] = frozenset(
    {"path", "url", "title", "topic", "format", "depth", "metadata"}
)
ALLOWED_KEYS: frozenset[str] = SPEC_KEYS | METADATA_KEYS
URL_SCHEMES: frozenset[str] = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class SourceSpec:
    """One entry of the sources file: a local file or a URL, with its descriptive fields."""

    kind: Literal["path", "url"]
    location: str  # path as written (relative to the sources file's folder) or absolute URL
    title: str | None = None
    topic: str = ""
    format: str | None = None  # e.g. "webtext" for the user's flattened page; None = detect
    depth: int = 0  # link-following depth for URLs (0 = the page only)
    metadata: dict[str, str] = field(default_factory=dict)  # license, repo, ...


def normalize_url(url: str) -> str:
    """The canonical form of a URL: lower-case scheme and host, no fragment, no default port,
    and ``/`` for an empty path (so equal pages compare equal)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal needs its brackets back
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad port in URL {url!r}") from exc
    netloc = host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or ("/" if netloc else "")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def is_url(location: str) -> bool:
    """True when ``location`` is written as an absolute URL (``scheme://...``)."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.isalpha() and len(scheme) > 1


def doc_id_for(spec_or_location: str | SourceSpec, base_dir: Path | None = None) -> str:
    """Stable document id of a source: ``url:<normalised url>`` or
    ``file:<posix path relative to base_dir>`` (the path as written when it lies outside
    ``base_dir`` or no ``base_dir`` is given)."""
    location = (
        spec_or_location.location if isinstance(spec_or_location, SourceSpec) else spec_or_location
    )
    if is_url(location):
        return "url:" + normalize_url(location)
    path = PurePath(location)
    if base_dir is not None and path.is_absolute():
        rel = os.path.relpath(os.path.normpath(path), os.path.normpath(base_dir.absolute()))
        if not rel.startswith(".."):
            path = PurePath(rel)
    return "file:" + posixpath.normpath(path.as_posix())


def load_sources(path: Path) -> list[SourceSpec]:
    """Parse a sources file into specs, in file order.

    Raises :class:`ConfigError` naming the file and entry for malformed TOML, unknown keys,
    a missing or doubled location, a bad depth or a duplicate location."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"sources file not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read sources file {path}: {exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc

    unknown_top = set(data) - {"source"}
    if unknown_top:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown_top)}; use [[source]] tables only"
        )
    entries = data.get("source", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: 'source' must be an array of tables ([[source]])")

    base_dir = path.parent
    specs: list[SourceSpec] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: source #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        spec = _parse_entry(entry, where)
        doc_id = doc_id_for(spec.location, base_dir)
        if doc_id in seen:
            raise ConfigError(
                f"{where}: duplicate location {spec.location!r} (same as source #{seen[doc_id]})"
            )
        seen[doc_id] = number
        specs.append(spec)
    return specs


def _parse_entry(entry: dict[str, Any], where: str) -> SourceSpec:
    """One ``[[source]]`` table → :class:`SourceSpec` (validated)."""
    unknown = set(entry) - ALLOWED_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(ALLOWED_KEYS))}"
        )
    has_path, has_url = "path" in entry, "url" in entry
    if has_path and has_url:
        raise ConfigError(
            f"{where}: give either 'path' or 'url', not both "
            "(a public URL for a local file goes in metadata.url)"
        )
    if not (has_path or has_url):
        raise ConfigError(f"{where}: missing location: give 'path' or 'url'")

    kind: Literal["path", "url"] = "path" if has_path else "url"
    location = _string(entry, kind, where)
    if not location.strip():
        raise ConfigError(f"{where}: '{kind}' is empty")
    if kind == "url":
        scheme = urlsplit(location).scheme.lower()
        if scheme not in URL_SCHEMES or not urlsplit(location).hostname:
            raise ConfigError(f"{where}: url must be an absolute http(s) URL, got {location!r}")
    elif is_url(location):
        raise ConfigError(f"{where}: 'path' looks like a URL ({location!r}); use 'url'")

    depth = entry.get("depth", 0)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"{where}: depth must be a non-negative integer, got {depth!r}")
    if depth and kind == "path":
        raise ConfigError(f"{where}: depth only applies to url sources")

    metadata: dict[str, str] = {k: _string(entry, k, where) for k in METADATA_KEYS if k in entry}
    extra = entry.get("metadata", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: metadata must be a table of strings")
    for key, value in extra.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}: metadata.{key} must be a string, got {value!r}")
        metadata[key] = value

    title = _string(entry, "title", where) if "title" in entry else None
    topic = _string(entry, "topic", where) if "topic" in entry else ""
    fmt = _string(entry, "format", where) if "format" in entry else None
    return SourceSpec(
        kind=kind,
        location=location,
        title=title,
        topic=topic,
        format=fmt,
        depth=depth,
        metadata=metadata,
    )


def _string(entry: dict[str, Any], key: str, where: str) -> str:
    """The value of ``key`` in ``entry``, which must be a string."""
    value = entry[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
    return value
