"""Refuse classification requests before their bodies are parsed.

Parsing a multipart body (and spooling a large upload to disk) costs CPU that an overloaded,
starting or stopping service does not have. When the service would refuse a request anyway,
this ASGI middleware answers at once with the same JSON error it would have given later. The
body is read and discarded unparsed first, so that the client, which is usually still
sending, gets the answer instead of a connection reset, and the connection stays usable.
Discarding is bounded by ``max_body_bytes``.

It also enforces that limit for every request with a body: a declared Content-Length over it
is answered 413 before a byte is read (and the connection closed), and a streamed body is
counted as it arrives, so no handler ever buffers more than the limit.

Requests to those paths must also be of the one media type their endpoints parse
(``multipart/form-data``); any other (JSON, urlencoded, none) is answered 415 the same way.
A gate for paths whose endpoints read the body themselves (the Open Inference Protocol's
infer, whose body is JSON possibly followed by binary data) is given no media type, and
matches its paths with a predicate (their model name is part of the path).

The admission check here is a fast path only: admission proper happens in ``Classifier`` once
the request is parsed, so a request that passes the gate can still be refused there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ErrorListener, error_response
from app.errors import PayloadTooLarge, RequestError, UnsupportedMediaType

Refusal = Callable[[], RequestError | None]
PathMatch = Collection[str] | Callable[[str], bool]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; FastAPI passes
    HTTPExceptions from body parsing through to the error handlers unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


class RequestGate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: PathMatch,
        media_type: str | None,
        refusal: Refusal,
        max_body_bytes: int,
        on_error: ErrorListener | None = None,
    ) -> None:
        self.app = app
        self.gated: Callable[[str], bool] = (
            paths if callable(paths) else frozenset(paths).__contains__
        )
        self.media_type = media_type
        self.refusal = refusal
        self.max_body_bytes = max_body_bytes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_body_bytes:
            await self._answer(_too_large(self.max_body_bytes), scope, receive, send)
            return
        gated = scope["method"] == "POST" and self.gated(scope["path"])
        if gated and (refusal := self._refusal(scope)) is not None:
            if not await discard_body(receive, self.max_body_bytes):
                refusal = _too_large(self.max_body_bytes)
            await self._answer(refusal, scope, receive, send)
            return
        await self.app(scope, _counting(receive, self.max_body_bytes), send)

    def _refusal(self, scope: Scope) -> RequestError | None:
        if self.media_type is not None and _media_type(scope) != self.media_type:
            # The header is not quoted back: it is the client's input.
            return UnsupportedMediaType(f"the request body must be {self.media_type}")
        return self.refusal()

    async def _answer(
        self, error: RequestError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if self.on_error is not None:
            self.on_error(error)
        response = error_response(error.status_code, error.code, error.message, error.headers)
        await response(scope, receive, send)


_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _declared_length(scope: Scope) -> int:
    length = Headers(scope=scope).get("content-length", "")
    return int(length) if length.isdigit() else 0


def _media_type(scope: Scope) -> str:
    content_type = Headers(scope=scope).get("content-type", "")
    return content_type.partition(";")[0].strip().lower()


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


def _too_large(limit: int) -> PayloadTooLarge:
    # The rest of the body is left unread, so the connection cannot be reused.
    return PayloadTooLarge(
        f"the request body is over {limit} bytes", headers={"Connection": "close"}
    )


async def discard_body(receive: Receive, limit: int) -> bool:
    """Read the request body to its end without keeping it; False if it is over ``limit``."""
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return True  # the client left; nothing more to read
        received += len(message.get("body", b""))
        if received > limit:
            return False
        if not message.get("more_body", False):
            return True
