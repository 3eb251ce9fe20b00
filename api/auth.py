"""Bearer API keys. Settings hold only sha256 hex digests of keys, so a leaked config file
does not leak keys; presented keys are hashed and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from fastapi import Request

from api.errors import ApiError


def hash_key(key: str) -> str:
    """The sha256 hex digest of an API key (what goes into the settings)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(token: str | None, hashes: Iterable[str]) -> bool:
    """Whether ``token`` hashes to one of ``hashes`` (every digest is compared, in constant time)."""
    if token is None:
        return False
    presented = hash_key(token).encode()
    matched = False
    for digest in hashes:
        # No early exit: the time taken does not reveal which digest matched.
        matched |= hmac.compare_digest(presented, digest.strip().lower().encode())
    return matched


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="mlrag"'})


def check_api_key(request: Request, api_hashes: list[str], admin_hashes: list[str]) -> None:
    """Require a valid API (or admin) key when API keys are configured; else allow."""
    if not api_hashes:
        return
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing bearer API key")
    if not key_matches(token, [*api_hashes, *admin_hashes]):
        raise _unauthorized("invalid API key")


def check_admin_key(request: Request, admin_hashes: list[str]) -> None:
    """Require a valid admin key; admin routes are closed while no admin key is configured."""
    if not admin_hashes:
        raise ApiError(403, "forbidden", "admin routes are disabled: no admin key is configured")
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing bearer admin key")
    if not key_matches(token, admin_hashes):
        raise ApiError(403, "forbidden", "this key is not an admin key")
