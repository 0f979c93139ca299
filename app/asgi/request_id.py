"""X-Request-ID: take the client's id or make one, return it on every response, log with it.

The id lives in a context variable while the request is handled, so every log line emitted
on its behalf carries it (``app.observability.logging_setup.RequestIdFilter`` reads it). It is also
kept in
the ASGI scope: an unhandled exception is answered by Starlette's outermost middleware after
this one has returned, and that answer still needs the id.
"""

from __future__ import annotations

import os
import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.request_context import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
SCOPE_KEY = "fusionserve.request_id"

_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


def scope_request_id(scope: Scope) -> str | None:
    """The id the middleware gave this request, if it ran."""
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None


def accept_request_id(value: str | None, max_length: int) -> str:
    """``value`` if it is 1..max_length printable ASCII characters, else a new one: 128
    random bits as 32 hex digits (what a uuid4's hex holds, at a tenth of its cost)."""
    if value and len(value) <= max_length and _PRINTABLE_ASCII.fullmatch(value):
        return value
    return os.urandom(16).hex()


class RequestIdMiddleware:
    """Outermost middleware: every response passing through it gets ``X-Request-ID``."""

    def __init__(self, app: ASGIApp, *, max_length: int) -> None:
        self.app = app
        self.max_length = max_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER), self.max_length)
        scope[SCOPE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
