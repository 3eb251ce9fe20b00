"""The API docs: ``/docs`` (Swagger UI) and ``/openapi.json``, served only from this host.

FastAPI's own ``/docs`` and ``/redoc`` pull their scripts from a CDN without integrity
checks; here Swagger UI's files come from the ``swagger-ui-bundle-v2`` package (module
``swagger_ui_bundle``) under ``/docs/assets/``, the page has a strict Content-Security-Policy
that allows nothing but this host, and there is no ``/redoc`` (ReDoc ships no local bundle).
Without the package, ``/docs`` is a small page linking ``/openapi.json``.

``settings.docs_enabled``: ``auto`` (the default) serves the docs only while no API keys are
configured, so a keyed deployment does not publish its API description to everyone.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from api.errors import ApiError
from rag.config import Settings

log = logging.getLogger(__name__)

OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs/assets"

_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}

# Swagger UI sets inline styles; everything else is this host only.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)

# validatorUrl: null — by default Swagger UI shows a badge image from validator.swagger.io.
_INIT_JS = """\
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""


def docs_enabled(settings: Settings) -> bool:
    """Whether ``/docs`` and ``/openapi.json`` are served (``auto``: only without API keys)."""
    if settings.docs_enabled == "auto":
        return not settings.api_key_hashes
    return bool(settings.docs_enabled)


def swagger_ui_dir() -> Path | None:
    """The packaged Swagger UI folder, or None when the package is not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def _swagger_page(root: str, title: str) -> str:
    assets = html.escape(root + ASSETS_URL)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} – API docs</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{html.escape(root + OPENAPI_URL)}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{html.escape(root)}/docs/init.js"></script>
</body>
</html>
"""


def _plain_page(root: str, title: str) -> str:
    spec = html.escape(root + OPENAPI_URL)
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)} – API docs</title></head>
<body>
<h1>{html.escape(title)} API</h1>
<p>The OpenAPI description is at <a href="{spec}">{spec}</a>.
Install <code>swagger-ui-bundle-v2</code> to browse it here with Swagger UI.</p>
</body>
</html>
"""


def install_docs(app: FastAPI, settings: Settings) -> None:
    """Add ``/docs`` (and its assets) to ``app`` when the docs are enabled. The app must be
    created with ``docs_url=None, redoc_url=None`` and ``openapi_url`` from
    :func:`openapi_url`."""
    if not docs_enabled(settings):
        return
    bundle = swagger_ui_dir()
    if bundle is None:
        log.info("swagger_ui_bundle is not installed: /docs links /openapi.json only")
    else:

        @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
        async def docs_asset(name: str) -> FileResponse:
            # Only the files the page uses: the bundle's own index.html and initializer
            # would load the Petstore example from another host.
            media_type = _ASSETS.get(name)
            if media_type is None:
                raise ApiError(404, "not_found", f"no docs asset {name!r}")
            return FileResponse(bundle / name, media_type=media_type)

        @app.get("/docs/init.js", include_in_schema=False)
        async def docs_init() -> Response:
            return Response(_INIT_JS, media_type="text/javascript")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path") or "").rstrip("/")
        page = _swagger_page(root, app.title) if bundle else _plain_page(root, app.title)
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})


def openapi_url(settings: Settings) -> str | None:
    """``/openapi.json`` when the docs are enabled, else None (not served)."""
    return OPENAPI_URL if docs_enabled(settings) else None
