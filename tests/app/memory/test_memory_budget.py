"""MemoryBudget: reservations from any thread, waiters on the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.memory.memory_budget import MemoryBudget

pytestmark = pytest.mark.anyio


def test_reservations_add_up_to_the_capacity() -> None:
    budget = MemoryBudget(100)
    assert budget.try_reserve(60)
    assert budget.try_reserve(40)
    assert budget.used == 100
    assert not budget.try_reserve(1)
    assert budget.used == 100
    budget.release(40)
    assert budget.used == 60
    assert budget.try_reserve(40)
    assert not budget.try_reserve(1)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        MemoryBudget(0)


def test_reservations_from_many_threads_never_exceed_the_capacity() -> None:
    budget = MemoryBudget(10)
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak
        for _ in range(2000):
            if budget.try_reserve(3):
                with lock:
                    peak = max(peak, budget.used)
                budget.release(3)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.used == 0
    assert 3 <= peak <= 9


async def test_room_is_there_at_once() -> None:
    budget = MemoryBudget(100)
    assert budget.try_reserve(50)
    assert await budget.wait_for_room(50, timeout_s=0)
    assert budget.used == 50  # waiting reserves nothing
    assert budget.waiting == 0


async def test_a_release_from_another_thread_wakes_the_waiter() -> None:
    budget = MemoryBudget(100)
    assert budget.try_reserve(80)
    waiter = asyncio.create_task(budget.wait_for_room(50, timeout_s=10))
    await asyncio.sleep(0.01)
    assert budget.waiting == 1
    assert not waiter.done()
    await asyncio.to_thread(budget.release, 20)  # 40 free: not enough yet
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await asyncio.to_thread(budget.release, 60)
    assert await asyncio.wait_for(waiter, 1)
    assert budget.waiting == 0
    assert budget.used == 0


async def test_only_the_waiters_that_fit_are_woken() -> None:
    budget = MemoryBudget(100)
    assert budget.try_reserve(100)
    small = asyncio.create_task(budget.wait_for_room(30, timeout_s=10))
    large = asyncio.create_task(budget.wait_for_room(90, timeout_s=0.2))
    await asyncio.sleep(0.01)
    budget.release(40)
    assert await asyncio.wait_for(small, 1)
    assert not await large  # 60 free, never 90: times out
    assert budget.waiting == 0


async def test_a_timed_out_or_cancelled_waiter_leaves_no_trace() -> None:
    budget = MemoryBudget(10)
    assert budget.try_reserve(10)
    assert not await budget.wait_for_room(5, timeout_s=0.01)
    task = asyncio.create_task(budget.wait_for_room(5, timeout_s=10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.waiting == 0
    budget.release(10)  # wakes nobody, breaks nothing
    assert budget.used == 0


async def test_more_than_the_capacity_can_never_be_waited_for() -> None:
    with pytest.raises(ValueError, match="never fit"):
        await MemoryBudget(10).wait_for_room(11, timeout_s=1)
