"""Response headers every API response carries: no MIME sniffing, no Referer sent to the
sites that citations link to, and no caching of answers (which may hold corpus text behind
API keys) unless a route set its own policy. Static assets (the chat page's files, the docs'
bundle) stay cacheable."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
CACHEABLE_PREFIXES = ("/static/", "/docs/assets/")


class SecurityHeadersMiddleware:
    """Adds ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and (except
    under ``cacheable_prefixes``) ``Cache-Control: no-store`` where a response lacks them."""

    def __init__(self, app: ASGIApp, cacheable_prefixes: tuple[str, ...] = CACHEABLE_PREFIXES):
        self.app = app
        self.cacheable_prefixes = cacheable_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith(self.cacheable_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                extra = [(k, v) for k, v in _ALWAYS if k not in present]
                if not cacheable and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
