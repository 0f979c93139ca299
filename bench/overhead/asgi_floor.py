"""The raw-ASGI floor: what HTTP and reading a request body cost with no framework at all.

A bare ASGI callable: any POST has its whole body read into memory (as a server must before
it can parse a form) and gets the same small fixed JSON answer, status 200; nothing is
parsed, decoded or run. It is served by uvicorn configured as ``fusionserve serve`` configures
it (app/cli.py): ``uvicorn.Config`` with its default HTTP implementation and event loop
(``"auto"``: httptools and uvloop when installed, as they are in the main environment), the
lifespan protocol on, no access log, log level warning. The overhead benchmark
(bench.overhead.overhead_benchmark) measures it beside the real servers, so their CPU per
request can be read against this floor.

    python -m bench.overhead.asgi_floor --port 8145
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The shape of a classification answer, fixed (a real one is a few hundred bytes).
BODY = json.dumps(
    {"label": "floor", "probability": 1.0, "predictions": [{"label": "floor", "probability": 1.0}]}
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: Message, receive: Receive, send: Send) -> None:
    """The floor's ASGI application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if await read_body(receive) is None:
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def config(port: int, host: str = "127.0.0.1") -> uvicorn.Config:
    """uvicorn's configuration for the floor: the settings ``app.server.uvicorn_config``
    gives ``fusionserve serve`` (http and loop left at uvicorn's defaults, no proxy headers,
    no server header), minus FusionServe's own app."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead.asgi_floor", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.Server(config(args.port, args.host)).run()


if __name__ == "__main__":
    main()
