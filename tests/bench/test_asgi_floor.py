"""bench.overhead.asgi_floor: the raw-ASGI floor answers any POST with its fixed JSON after
reading the whole body, speaks the lifespan protocol, and runs on the uvicorn settings
``fusionserve serve`` uses."""

from __future__ import annotations

import ast
import inspect
import json
from typing import Any

import httpx
import pytest
import uvicorn

from app import server
from app.config.settings import Settings
from bench.overhead import asgi_floor

pytestmark = pytest.mark.anyio


class Channel:
    """Hands ``incoming`` to the app one message at a time and keeps what it sends."""

    def __init__(self, incoming: list[dict[str, Any]]) -> None:
        self.incoming = list(incoming)
        self.sent: list[asgi_floor.Message] = []

    async def receive(self) -> asgi_floor.Message:
        return self.incoming.pop(0)

    async def send(self, message: asgi_floor.Message) -> None:
        self.sent.append(message)


async def test_a_multipart_post_gets_the_fixed_json() -> None:
    transport = httpx.ASGITransport(app=asgi_floor.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/classify", files={"image": ("a.jpg", b"\xff\xd8" * 5000)}, data={"text": "a cat"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(asgi_floor.BODY)
    assert int(response.headers["content-length"]) == len(asgi_floor.BODY)


async def test_the_whole_body_is_read_before_the_answer() -> None:
    chunks = [b"a" * 10, b"b" * 20, b"c" * 5]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    assert await asgi_floor.read_body(Channel(messages).receive) == b"".join(chunks)
    channel = Channel(messages)
    await asgi_floor.app({"type": "http", "method": "POST"}, channel.receive, channel.send)
    assert channel.incoming == []  # every chunk was taken
    assert [m["type"] for m in channel.sent] == ["http.response.start", "http.response.body"]
    assert channel.sent[0]["status"] == 200


async def test_a_client_gone_mid_body_gets_no_answer() -> None:
    channel = Channel(
        [{"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}]
    )
    await asgi_floor.app({"type": "http", "method": "POST"}, channel.receive, channel.send)
    assert channel.sent == []


async def test_the_lifespan_protocol_is_answered() -> None:
    channel = Channel([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    await asgi_floor.app({"type": "lifespan"}, channel.receive, channel.send)
    assert [m["type"] for m in channel.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


def _keywords_of_uvicorn_config_in(function: Any) -> set[str]:
    tree = ast.parse(inspect.getsource(function).lstrip())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "Config"
        ):
            return {k.arg for k in node.keywords if k.arg is not None}
    raise AssertionError("no uvicorn.Config(...) call")


def test_uvicorn_runs_the_floor_as_fusionserve_serve_runs_fusionserve() -> None:
    config = asgi_floor.config(8145)
    defaults = uvicorn.Config(asgi_floor.app)
    # fusionserve serve leaves the HTTP implementation and the loop at uvicorn's defaults
    # ("auto": httptools and uvloop when installed); so does the floor.
    assert not {"http", "loop"} & _keywords_of_uvicorn_config_in(server.uvicorn_config)
    assert (config.http, config.loop) == (defaults.http, defaults.loop) == ("auto", "auto")
    assert config.lifespan == "on"
    assert config.access_log is False
    # No proxy headers read and no server header, as fusionserve serve with its defaults.
    served = server.uvicorn_config(asgi_floor.app, Settings())
    assert (config.proxy_headers, config.server_header) == (False, False)
    assert (served.proxy_headers, served.server_header) == (False, False)
    assert (config.host, config.port) == ("127.0.0.1", 8145)
