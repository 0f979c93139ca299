"""Error bodies under /v2 in the Open Inference Protocol's shape: ``{"error": "<message>"}``.

Everything else answers errors in the service's envelope ``{"error": {"code", "message",
"request_id"}}``, wherever they arise: the routes, the request gate, authentication, the
router's own 404 and 405. This ASGI middleware, placed outside all of those, rewrites an error
response with that envelope on a /v2 path into the protocol's body, keeping its status and
headers (``Retry-After``, ``WWW-Authenticate``, ``X-Request-ID``). Error bodies are small;
other responses pass through untouched, unbuffered.
"""

from __future__ import annotations

import json

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v2"


def is_v2_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class V2ErrorBodies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v2_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: Message | None = None  # the start of an error response, sent with its new body
        chunks: list[bytes] = []

        async def reshaping(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and _is_json_error(message):
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = reshape(b"".join(chunks))
            headers = MutableHeaders(scope=held)
            headers["content-length"] = str(len(body))
            await send(held)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshaping)


def _is_json_error(start: Message) -> bool:
    content_type = MutableHeaders(scope=start).get("content-type", "")
    return int(start["status"]) >= 400 and content_type.startswith("application/json")


def reshape(body: bytes) -> bytes:
    """``{"error": "<message>"}`` for an envelope; any other body unchanged."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        return body
    return json.dumps({"error": message}, ensure_ascii=False).encode()
