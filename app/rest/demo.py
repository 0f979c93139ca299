"""The demo page at ``/``: pick an image, type a description, see the class probabilities.

The page is static (``app/static/``, shipped as package data): HTML, one stylesheet and one
script, no build step, nothing fetched from elsewhere. The script calls the service's own
API from the browser (``/v1/models`` or ``/info``, then ``POST /classify``), with the user's
API key when the service needs one, so the page itself holds no secret and is served without
a key (``app.asgi.auth.open_paths``). ``demo_enabled=false`` leaves these routes out (404).

Every response carries a strict Content-Security-Policy (scripts, styles and connections to
this origin only, no inline script or style; previews of the chosen image are ``blob:`` URLs)
and is revalidated on each load (``no-cache`` with an ETag, 304 when unchanged), so that an
upgraded service never runs with a stale script.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Request, Response

DEMO_PAGE = "/"
ASSETS_PREFIX = "/demo/"
_PAGE_FILE = "index.html"
# Assets by file name in app/static/ (served under ASSETS_PREFIX), with their media types.
_ASSET_TYPES = {
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
# Served without an API key when the demo is on.
DEMO_PATHS = (DEMO_PAGE, *(ASSETS_PREFIX + name for name in _ASSET_TYPES))

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def load(cls, name: str, media_type: str) -> StaticFile:
        body = resources.files("app").joinpath("static", name).read_bytes()
        return cls(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(self, request: Request) -> Response:
        headers = SECURITY_HEADERS | {"ETag": self.etag}
        if self.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")} - {""}


def build_router() -> APIRouter:
    """Routes for the page and its assets; reads the files (a few kB) once, now."""
    page = StaticFile.load(_PAGE_FILE, "text/html; charset=utf-8")
    assets = {name: StaticFile.load(name, kind) for name, kind in _ASSET_TYPES.items()}
    router = APIRouter(include_in_schema=False)

    @router.get(DEMO_PAGE)
    async def demo_page(request: Request) -> Response:
        return page.response(request)

    for name, asset in assets.items():
        router.add_api_route(ASSETS_PREFIX + name, _asset_route(asset), methods=["GET"], name=name)
    return router


def _asset_route(asset: StaticFile) -> Callable[[Request], Awaitable[Response]]:
    async def serve_asset(request: Request) -> Response:
        return asset.response(request)

    return serve_asset
