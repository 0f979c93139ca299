"""Stop working for clients that have left: their queued items are then skipped, not computed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

from app.errors import ClientDisconnected

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    # Called once the body has been read: the next ASGI message is the disconnect, which
    # servers also send after the response is complete (we have stopped listening by then).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; cancel it if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (watcher, task):
            pending.cancel()  # no-op on a finished one
        # Let both settle so nothing outlives the request; their outcome is read below.
        await asyncio.gather(watcher, task, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnected("the client closed the connection")
    return task.result()
