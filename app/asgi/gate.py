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

The gated paths come in groups (``GatedPaths``), each with the one media type its endpoints
parse: requests to the classification routes must be ``multipart/form-data``, any other
(JSON, urlencoded, none) is answered 415 the same way. The group of paths whose endpoints
read the body themselves (the Open Inference Protocol's infer, whose body is JSON possibly
followed by binary data) has no media type, and matches its paths with a predicate (their
model name is part of the path). One gate serves every group: the headers are read once and
the body counted once.

The admission check here is a fast path only: admission proper happens in ``ModelRunner`` once
the request is parsed, so a request that passes the gate can still be refused there.

What passes holds its body in memory (parsed, or read whole by the Open Inference Protocol)
until it is answered, so the gate reserves the body's size from the process-wide
``body_memory`` budget before reading it, and gives it back once the response is sent: the
declared Content-Length, or ``max_body_bytes`` when there is none or the body is compressed
(it may inflate to that). No room: a fast 503 ``memory_busy`` with ``Retry-After``, as for
overload, so the bodies a replica holds at once never pass the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.asgi.error_responses import ErrorListener, error_response
from app.errors import MemoryBusy, PayloadTooLarge, RequestError, UnsupportedMediaType
from app.memory.memory_budget import MemoryBudget

Refusal = Callable[[], RequestError | None]


class RawHeaders:
    """A request's headers looked up by lowercase name, the first of repeats (as Starlette's
    ``Headers``), indexed once for the gate's several lookups."""

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._values = {name: value for name, value in reversed(raw)}

    def get(self, key: str, default: str) -> str:
        value = self._values.get(key.encode("latin-1"))
        return default if value is None else value.decode("latin-1")


PathMatch = Collection[str] | Callable[[str], bool]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; FastAPI passes
    HTTPExceptions from body parsing through to the error handlers unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


@dataclass(frozen=True)
class GatedPaths:
    """Paths (a collection, or a predicate) whose requests the gate admits, and the media
    type their bodies must have (None: any)."""

    paths: PathMatch
    media_type: str | None

    def matches(self) -> Callable[[str], bool]:
        paths = self.paths
        return paths if callable(paths) else frozenset(paths).__contains__


class RequestGate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        gated: Sequence[GatedPaths],
        refusal: Refusal,
        max_body_bytes: int,
        body_memory: MemoryBudget,
        retry_after_s: int = 1,
        overload_status: int = 503,
        on_error: ErrorListener | None = None,
    ) -> None:
        self.app = app
        self.gated = [(group.matches(), group.media_type) for group in gated]
        self.refusal = refusal
        self.max_body_bytes = max_body_bytes
        self.body_memory = body_memory
        self.retry_after_s = retry_after_s
        self.overload_status = overload_status
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = RawHeaders(scope["headers"])
        declared = _declared_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            await self._answer(_too_large(self.max_body_bytes), scope, receive, send)
            return
        group = self._group(scope["path"]) if scope["method"] == "POST" else None
        gated = group is not None
        reserved = _body_bytes(headers, self.max_body_bytes) if gated else 0
        refusal = None if group is None else self._refusal(headers, reserved, group[1])
        if refusal is not None:
            discarded = await discard_body(receive, self.max_body_bytes)
            if discarded is None:
                refusal = _too_large(self.max_body_bytes)
            else:  # a burst of refused bodies churns memory too: count it for the trimmer
                self.body_memory.passed_through(discarded)
            await self._answer(refusal, scope, receive, send)
            return
        try:
            await self.app(scope, _counting(receive, self.max_body_bytes), send)
        finally:
            if gated:
                self.body_memory.release(reserved)

    def _group(self, path: str) -> tuple[Callable[[str], bool], str | None] | None:
        """The first group of gated paths ``path`` is in, or None."""
        for group in self.gated:
            if group[0](path):
                return group
        return None

    def _refusal(
        self, headers: RawHeaders, body_bytes: int, media_type: str | None
    ) -> RequestError | None:
        """Why the request is refused, or None once its body's memory is reserved."""
        if media_type is not None and _media_type(headers) != media_type:
            # The header is not quoted back: it is the client's input.
            return UnsupportedMediaType(f"the request body must be {media_type}")
        refusal = self.refusal()
        if refusal is None and not self.body_memory.try_reserve(body_bytes):
            return MemoryBusy(
                "the request bodies in progress use all of their memory budget "
                f"({self.body_memory.capacity // 2**20} MiB); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
                status_code=self.overload_status,
            )
        return refusal

    async def _answer(
        self, error: RequestError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if self.on_error is not None:
            self.on_error(error)
        response = error_response(error.status_code, error.code, error.message, error.headers)
        await response(scope, receive, send)


_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _declared_length(headers: RawHeaders) -> int | None:
    """The Content-Length, or None when there is no valid one (a chunked body)."""
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def _body_bytes(headers: RawHeaders, limit: int) -> int:
    """The memory a body may take once read: its declared length, or ``limit`` when it has
    none or is compressed (decompression is bounded by the limit)."""
    declared = _declared_length(headers)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if declared is None or encoding != "identity":
        return limit
    return min(declared, limit)


def _media_type(headers: RawHeaders) -> str:
    content_type = headers.get("content-type", "")
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


async def discard_body(receive: Receive, limit: int) -> int | None:
    """Read the request body to its end without keeping it: the bytes read, or None if it
    is over ``limit``."""
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return received  # the client left; nothing more to read
        received += len(message.get("body", b""))
        if received > limit:
            return None
        if not message.get("more_body", False):
            return received
