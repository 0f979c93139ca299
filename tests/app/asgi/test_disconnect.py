"""A request's work is cancelled when its client leaves, as seen once it has waited
``watch_after_s``; a request answered sooner is never watched."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request
from starlette.types import Message

from app.asgi.disconnect import cancel_on_disconnect
from app.errors import ClientDisconnected

pytestmark = pytest.mark.anyio


class Client:
    """The ASGI receive of a request whose body was read: it waits until the client leaves."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.receives = 0

    async def receive(self) -> Message:
        self.receives += 1
        await self.left.wait()
        return {"type": "http.disconnect"}

    def request(self) -> Request:
        return Request({"type": "http", "method": "POST", "headers": []}, self.receive)


async def _work(done: asyncio.Future[str]) -> str:
    return await done


async def test_a_request_answered_before_the_delay_is_never_watched() -> None:
    client = Client()
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    done.set_result("answer")
    assert await cancel_on_disconnect(client.request(), _work(done), 0.05) == "answer"
    await asyncio.sleep(0.1)  # past the delay: the cancelled timer starts no watcher
    assert client.receives == 0


@pytest.mark.parametrize("watch_after_s", [0.0, 0.05])
async def test_a_client_that_left_is_noticed_once_the_delay_has_passed(
    watch_after_s: float,
) -> None:
    client = Client()
    loop = asyncio.get_running_loop()
    never: asyncio.Future[str] = loop.create_future()
    client.left.set()  # gone before its request is answered
    started = loop.time()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(
            cancel_on_disconnect(client.request(), _work(never), watch_after_s), 5
        )
    assert loop.time() - started >= watch_after_s
    assert client.receives == 1
    assert never.cancelled()  # the work was cancelled: a queued item is then skipped


async def test_a_watched_request_answered_in_time_stops_its_watcher() -> None:
    client = Client()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.1, done.set_result, "late answer")
    assert await cancel_on_disconnect(client.request(), _work(done), 0.02) == "late answer"
    assert client.receives == 1  # it was watched
    client.left.set()
    await asyncio.sleep(0.01)  # a watcher still running would cancel this task now


async def test_a_cancellation_from_elsewhere_is_not_a_disconnect() -> None:
    client = Client()
    never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(cancel_on_disconnect(client.request(), _work(never), 0.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
