"""One HTTP request straight into an ASGI app, with nothing of a client library around it
(whose own objects would blur what the app leaves behind, as in the reference-cycle tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.types import ASGIApp, Message


@dataclass(frozen=True)
class AsgiAnswer:
    status: int
    body: bytes


async def asgi_call(
    app: ASGIApp, method: str, path: str, body: bytes = b"", content_type: str | None = None
) -> AsgiAnswer:
    """``method path`` with ``body`` (one chunk) sent to ``app``; its status and body."""
    headers = [(b"host", b"test"), (b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:  # the request was read: the client waits for the answer (until cancelled)
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return AsgiAnswer(status, b"".join(chunks))
