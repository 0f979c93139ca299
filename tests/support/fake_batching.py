"""A fake clock and a fake model for the batcher's tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeModel:
    """Doubles its inputs. Can be held busy, and fails on poisoned items."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int]:
        self.calls.append(list(items))
        self.entered.set()
        assert self.gate.wait(10), "test never released the model"
        if any(i < 0 for i in items):
            raise ValueError("poisoned item")
        return [i * 2 for i in items]

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10)


async def wait_queued(batcher: Any, depth: int) -> None:
    """Until ``batcher`` (an ``app.core.batching.Batcher``) holds ``depth`` queued items."""
    for _ in range(1000):
        if batcher.queue_depth == depth:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"queue depth {batcher.queue_depth}, expected {depth}")
