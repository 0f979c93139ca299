"""Optional API-key authentication: ``Authorization: Bearer <key>``.

Off unless keys are configured (``api_keys``, ``api_keys_file``). When on, a pure ASGI
middleware, outermost, refuses every request without a valid key before anything else sees
it: before the overload gate (so a caller without a key gets 401, never a 503 that reveals
load) and before the body is parsed (a caller without a key costs no multipart parsing).
Everything is protected except the health probes and, by setting, the docs and metrics:
a route added later is protected without anyone remembering to.

The presented key is hashed and compared with every configured key's hash, all of them,
with ``hmac.compare_digest``: the time taken says nothing about which key, or how much of
one, matched. Every failure (no header, another scheme, a wrong key) gets the same 401.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.asgi.error_responses import error_response
from app.asgi.gate import discard_body
from app.config.settings import Settings
from app.errors import StartupError, Unauthorized

# Served by the metrics route; listed here so that auth_protect_metrics=False can open it.
METRICS_PATH = "/metrics"
SCHEME_NAME = "bearerAuth"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class ApiKeys:
    """The accepted keys, kept as SHA-256 digests only."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(key.encode()) for key in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, presented: bytes | None) -> bool:
        """Whether ``presented`` is one of the keys; compares with all of them, always."""
        candidate = _digest(presented or b"")
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(candidate, known)
        return matched and presented is not None


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def load_api_keys(settings: Settings) -> ApiKeys:
    """The keys from the settings and the key file. Reads the file (call once, at start-up)."""
    keys = [key.get_secret_value() for key in settings.api_keys]
    if settings.api_keys_file is not None:
        keys += _read_key_file(settings.api_keys_file)
    return ApiKeys(keys)


def _read_key_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StartupError(f"cannot read api_keys_file '{path}': {reason}") from exc
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        # A key file that grants nothing is a mistake; failing open would disable auth.
        raise StartupError(f"api_keys_file '{path}' holds no key")
    return keys


def bearer_token(scope: Scope) -> bytes | None:
    """The credentials of an ``Authorization: Bearer ...`` header, else None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


class ApiKeyGuard:
    """Answers 401 to any HTTP request for a path not in ``open_paths`` without a valid key."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: ApiKeys,
        open_paths: Collection[str],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = frozenset(open_paths)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.open_paths
            or self.keys.accepts(bearer_token(scope))
        ):
            await self.app(scope, receive, send)
            return
        error = Unauthorized()
        headers = dict(error.headers)
        # Read the body (unparsed, bounded) so that a client still sending gets the answer
        # rather than a reset; past the limit, answer anyway and close the connection.
        if await discard_body(receive, self.max_body_bytes) is None:
            headers["Connection"] = "close"
        response = error_response(error.status_code, error.code, error.message, headers)
        await response(scope, receive, send)


def open_paths(app: FastAPI, settings: Settings, probes: Collection[str]) -> frozenset[str]:
    """Paths served without a key: the health ``probes`` always, docs and metrics unless
    protected."""
    paths = set(probes)
    if not settings.auth_protect_docs:
        docs = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
        paths.update(path for path in docs if path)
    if not settings.auth_protect_metrics:
        paths.add(METRICS_PATH)
    return frozenset(paths)


def install_auth(
    app: FastAPI, settings: Settings, probes: Collection[str], keys: ApiKeys | None = None
) -> bool:
    """Protect ``app`` if keys are configured (``keys``, else read now from the settings);
    True if on. ``probes``: the paths open whatever else is protected (health, and the demo
    page, which holds no secret: its script sends the user's key). Call after every other
    middleware is added, so that this one runs first."""
    keys = load_api_keys(settings) if keys is None else keys
    if not keys:
        return False
    unprotected = open_paths(app, settings, probes)
    app.add_middleware(
        ApiKeyGuard, keys=keys, open_paths=unprotected, max_body_bytes=settings.max_body_bytes
    )
    app.openapi = _documented(app, unprotected)  # type: ignore[method-assign]
    return True


def _documented(app: FastAPI, unprotected: frozenset[str]) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` that also declares the bearer scheme and, on every protected
    operation, the key requirement and its 401."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI caches it in app.openapi_schema; completed in place
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (FUSIONSERVE_API_KEYS or FUSIONSERVE_API_KEYS_FILE).",
        }
        for path, item in schema.get("paths", {}).items():
            if path in unprotected:
                continue
            for method, operation in item.items():
                if method in _HTTP_METHODS:
                    operation["security"] = [{SCHEME_NAME: []}]
                    # A route that documents its own 401 (/v2: another body) keeps it.
                    operation.setdefault("responses", {}).setdefault("401", _UNAUTHORIZED)
        return schema

    return openapi


_UNAUTHORIZED = {
    "description": "Missing or invalid API key.",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    # Every operation documents its errors with this schema (app/rest/routes.py).
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}
