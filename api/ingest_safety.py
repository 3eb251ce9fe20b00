"""Checks on sources given over HTTP, which are untrusted: local paths only inside the
configured ingest roots (after resolving ``..`` and symlinks), URLs only http(s) and, unless
configured otherwise, only to public addresses (every redirect hop is checked again by
:mod:`ingest.fetch` during the fetch)."""

from __future__ import annotations

from pathlib import Path

from api.schemas import SourceIn
from rag.errors import InvalidInputError


def resolve_ingest_path(location: str, roots: list[Path]) -> tuple[Path, Path]:
    """(resolved file, the root containing it) for a path source; raises
    :class:`InvalidInputError` when it is outside every root, missing, or not a file."""
    if not roots:
        raise InvalidInputError(
            "local paths cannot be ingested over HTTP: no ingest_roots are configured"
        )
    if "\x00" in location:
        raise InvalidInputError("path contains a NUL byte")
    raw = Path(location)  # no expanduser: "~" must not reach outside the roots
    resolved_roots = [root.expanduser().resolve() for root in roots]
    candidates = [raw] if raw.is_absolute() else [root / raw for root in resolved_roots]
    inside: list[tuple[Path, Path]] = []
    for candidate in candidates:
        # resolve() removes ".." and follows every existing symlink, so a link pointing out
        # of a root is judged by its target. Containment is checked before existence, so
        # the answer does not reveal which files exist outside the roots.
        resolved = candidate.resolve()
        root = next((r for r in resolved_roots if resolved.is_relative_to(r)), None)
        if root is not None:
            inside.append((resolved, root))
    if not inside:
        raise InvalidInputError(f"path {location!r} is outside the allowed ingest roots")
    for resolved, root in inside:
        if resolved.is_file():
            return resolved, root
        if resolved.exists():
            raise InvalidInputError(f"not a regular file: {location!r}")
    raise InvalidInputError(f"no such file inside the ingest roots: {location!r}")


def check_source(
    source: SourceIn, roots: list[Path], allow_private: bool
) -> tuple[str, Path | None]:
    """The location to ingest (a resolved absolute path, or the URL) and, for paths, the
    root it lies in. Raises :class:`InvalidInputError` for anything not allowed."""
    if source.kind == "path":
        path, root = resolve_ingest_path(source.location, roots)
        return str(path), root
    from ingest.fetch import check_url_allowed

    check_url_allowed(source.location, allow_private=allow_private)
    return source.location, None
