"""Stop working for clients that have left: their queued items are then skipped, not computed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

from app.errors import ClientDisconnected

T = TypeVar("T")


async def _wait_for_disconnect(receive: Receive, left: Callable[[], None]) -> None:
    # Called once the body has been read: the next ASGI message is the disconnect, which
    # servers also send after the response is complete (we have stopped listening by then).
    while (await receive())["type"] != "http.disconnect":
        pass
    left()


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` in this task; cancel it if the client disconnects first. One watching
    task per request, the work itself running in the request's own task."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    def left() -> None:
        nonlocal gone
        gone = True
        task.cancel()

    # The watcher holds the ASGI receive, not the request: cancelled, it lingers until the
    # loop runs it again, and the request would keep its body (megabytes) alive meanwhile,
    # past the moment the body's memory is released and trimmed (app.memory.memory_trim).
    watcher = asyncio.ensure_future(_wait_for_disconnect(request.receive, left))
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:  # cancelled for another reason (the server stops): not ours to answer
            raise
        task.uncancel()
        raise ClientDisconnected("the client closed the connection") from None
    finally:
        watcher.cancel()
