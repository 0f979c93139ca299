"""X-Request-ID: take the client's id or make one, return it on every response, log with it.

The id lives in a context variable while the request is handled, so every log line emitted
on its behalf carries it (``app.observability.logging_setup.RequestIdFilter`` reads it). It is also
kept in
the ASGI scope: an unhandled exception is answered by Starlette's outermost middleware after
this one has returned, and that answer still needs the id.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.request_context import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
SCOPE_KEY = "fusionserve.request_id"
_HEADER_NAME = REQUEST_ID_HEADER.lower().encode("latin-1")  # as ASGI servers give names

_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


def scope_request_id(scope: Scope) -> str | None:
    """The id the middleware gave this request, if it ran."""
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, str) else None


def accept_request_id(value: str | None, max_length: int) -> str:
    """``value`` if it is 1..max_length printable ASCII characters, else a new one
    (``new_request_id``)."""
    if value and len(value) <= max_length and _PRINTABLE_ASCII.fullmatch(value):
        return value
    return new_request_id()


def new_request_id() -> str:
    """128 random bits as 32 hex digits, as a uuid4's hex holds. An id correlates log lines,
    it guards nothing, so it comes from ``random`` (seeded from the OS, and again in each
    forked worker) rather than a system call per request as ``os.urandom`` would cost."""
    return f"{random.getrandbits(128):032x}"


def _given_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == _HEADER_NAME:
            return value.decode("latin-1")
    return None


def _with_id(
    headers: Iterable[tuple[bytes, bytes]], request_id: bytes
) -> list[tuple[bytes, bytes]]:
    """The response's headers with ``X-Request-ID`` (a new list: a response may send the
    list it keeps), any the app set replaced."""
    return [*(h for h in headers if h[0].lower() != _HEADER_NAME), (_HEADER_NAME, request_id)]


class RequestIdMiddleware:
    """Outermost middleware: every response passing through it gets ``X-Request-ID``."""

    def __init__(self, app: ASGIApp, *, max_length: int) -> None:
        self.app = app
        self.max_length = max_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(_given_id(scope["headers"]), self.max_length)
        scope[SCOPE_KEY] = request_id
        encoded = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_id(message.get("headers", ()), encoded)
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
