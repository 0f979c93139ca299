"""Batcher unit tests: a fake model (blocking, controllable) and a fake clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.core.batching import Batcher
from app.errors import DeadlineExceeded, InferenceFailed, ShuttingDown
from tests.support.fake_batching import FakeClock, FakeModel, wait_queued

pytestmark = pytest.mark.anyio


@pytest.fixture
async def batcher(model: FakeModel, clock: FakeClock) -> AsyncIterator[Batcher[int, int]]:
    with ThreadPoolExecutor(1) as executor:
        b: Batcher[int, int] = Batcher(model, executor=executor, max_batch_size=4, clock=clock)
        b.start()
        yield b
        model.gate.set()
        await b.stop()


async def test_lone_request_runs_at_once(batcher: Batcher[int, int], model: FakeModel) -> None:
    assert await asyncio.wait_for(batcher.submit(21, timeout_s=60), timeout=5) == 42
    assert model.calls == [[21]]


async def test_batches_grow_while_busy_and_keep_order(
    batcher: Batcher[int, int], model: FakeModel
) -> None:
    model.hold()
    first = asyncio.create_task(batcher.submit(1, timeout_s=60))
    await model.wait_entered()
    rest = [asyncio.create_task(batcher.submit(i, timeout_s=60)) for i in range(2, 8)]
    await wait_queued(batcher, 6)
    model.gate.set()
    results = await asyncio.gather(first, *rest)
    assert results == [2, 4, 6, 8, 10, 12, 14]
    # One lone call, then the queued six split by max_batch_size=4, in arrival order.
    assert model.calls == [[1], [2, 3, 4, 5], [6, 7]]
    assert batcher.stats.sizes == {1: 1, 4: 1, 2: 1}


async def test_one_hand_off_each_way_per_batch(
    model: FakeModel, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Items cross to the inference thread a batch at a time (one executor call) and come
    # back a batch at a time: one wake-up of the event loop per finished batch, every
    # future resolved there, on the loop's thread.
    loop = asyncio.get_running_loop()
    submits, wakeups, resolved_on = [], [], set()

    class CountingExecutor(ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            submits.append(threading.get_ident())
            return super().submit(*args, **kwargs)

    with CountingExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=8, clock=clock
        )
        batcher.start()
        model.hold()
        first = asyncio.create_task(batcher.submit(1, timeout_s=60))
        await model.wait_entered()
        rest = [asyncio.create_task(batcher.submit(i, timeout_s=60)) for i in range(2, 10)]
        await wait_queued(batcher, 8)
        real = loop.call_soon_threadsafe
        monkeypatch.setattr(
            loop, "call_soon_threadsafe", lambda *a, **k: wakeups.append(1) or real(*a, **k)
        )
        for task in (first, *rest):
            task.add_done_callback(lambda _: resolved_on.add(threading.get_ident()))
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        monkeypatch.undo()
        await batcher.stop()
    assert results == [2 * i for i in range(1, 10)]
    assert model.calls == [[1], list(range(2, 10))]
    assert len(submits) == 2  # one executor call per batch, none per item
    assert len(wakeups) == 2  # one wake-up per finished batch (the first was held)
    assert resolved_on == {threading.get_ident()}


async def test_expired_requests_are_dropped_before_inference(
    batcher: Batcher[int, int], model: FakeModel, clock: FakeClock
) -> None:
    model.hold()
    running = asyncio.create_task(batcher.submit(1, timeout_s=60))
    await model.wait_entered()
    short = asyncio.create_task(batcher.submit(2, timeout_s=5))
    long = asyncio.create_task(batcher.submit(3, timeout_s=60))
    await wait_queued(batcher, 2)
    clock.now += 10  # the short request's deadline passes while it waits
    model.gate.set()
    assert await running == 2
    with pytest.raises(DeadlineExceeded) as caught:
        await short
    assert caught.value.status_code == 504
    assert await long == 6
    assert [2] not in model.calls
    assert all(2 not in call for call in model.calls)
    assert batcher.stats.expired == 1


async def test_waiting_never_exceeds_the_timeout(
    batcher: Batcher[int, int], model: FakeModel
) -> None:
    model.hold()
    running = asyncio.create_task(batcher.submit(1, timeout_s=60))
    await model.wait_entered()
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(2, timeout_s=0.05)  # real time: the model is stuck
    model.gate.set()
    assert await running == 2
    # The abandoned item was skipped, not computed, and the batcher still works.
    assert await batcher.submit(4, timeout_s=60) == 8
    assert all(2 not in call for call in model.calls)
    assert batcher.stats.skipped == 1


async def test_cancelled_submitters_are_skipped(
    batcher: Batcher[int, int], model: FakeModel
) -> None:
    model.hold()
    running = asyncio.create_task(batcher.submit(1, timeout_s=60))
    await model.wait_entered()
    gone = asyncio.create_task(batcher.submit(2, timeout_s=60))
    stays = asyncio.create_task(batcher.submit(3, timeout_s=60))
    await wait_queued(batcher, 2)
    gone.cancel()  # e.g. the client disconnected
    await asyncio.sleep(0)
    model.gate.set()
    assert await running == 2
    assert await stays == 6
    assert gone.cancelled()
    assert model.calls == [[1], [3]]


async def test_one_bad_item_fails_alone(batcher: Batcher[int, int], model: FakeModel) -> None:
    model.hold()
    running = asyncio.create_task(batcher.submit(1, timeout_s=60))
    await model.wait_entered()
    items = [asyncio.create_task(batcher.submit(i, timeout_s=60)) for i in (2, -1, 3)]
    await wait_queued(batcher, 3)
    model.gate.set()
    assert await running == 2
    results = await asyncio.gather(*items, return_exceptions=True)
    assert results[0] == 4
    assert isinstance(results[1], InferenceFailed)
    assert results[1].status_code == 500
    assert results[2] == 6
    assert model.calls == [[1], [2, -1, 3], [2], [-1], [3]]
    assert await batcher.submit(5, timeout_s=60) == 10


async def test_retries_after_a_failed_batch_skip_departed_and_expired_items(
    clock: FakeClock,
) -> None:
    first, second = FakeModel(), FakeModel()  # two gates: one per model call
    first.hold()
    second.hold()

    def model(items: list[int]) -> Sequence[int]:
        return (first if not first.calls else second)(items)

    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=4, clock=clock
        )
        batcher.start()
        running = asyncio.create_task(batcher.submit(1, timeout_s=60))
        await first.wait_entered()
        gone = asyncio.create_task(batcher.submit(2, timeout_s=60))
        late = asyncio.create_task(batcher.submit(4, timeout_s=5))
        bad = asyncio.create_task(batcher.submit(-1, timeout_s=60))
        stays = asyncio.create_task(batcher.submit(3, timeout_s=60))
        await wait_queued(batcher, 4)
        first.gate.set()
        assert await running == 2
        await second.wait_entered()  # the batch [2, 4, -1, 3] is running and will fail
        gone.cancel()
        await asyncio.sleep(0)
        clock.now += 10  # past the deadline of 4 while the failed batch ran
        second.gate.set()
        with pytest.raises(DeadlineExceeded):
            await late
        with pytest.raises(InferenceFailed):
            await bad
        assert await stays == 6
        assert gone.cancelled()
        assert first.calls == [[1]]
        assert second.calls == [[2, 4, -1, 3], [-1], [3]]
        assert batcher.stats.skipped == 1
        assert batcher.stats.expired == 1
        await batcher.stop()


async def test_wrong_result_count_fails_the_batch_not_the_loop(clock: FakeClock) -> None:
    def broken(items: list[int]) -> Sequence[int]:
        return [0] * (len(items) + 1)

    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            broken, executor=executor, max_batch_size=4, clock=clock
        )
        batcher.start()
        with pytest.raises(InferenceFailed):
            await batcher.submit(1, timeout_s=5)
        with pytest.raises(InferenceFailed):
            await batcher.submit(2, timeout_s=5)
        await batcher.stop()


async def test_max_wait_holds_a_batch_open(model: FakeModel, clock: FakeClock) -> None:
    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=3, max_wait_s=5.0, clock=clock
        )
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(i, timeout_s=60)) for i in (1, 2)]
        await asyncio.sleep(0.05)
        assert model.calls == []  # still waiting for a third item
        tasks.append(asyncio.create_task(batcher.submit(3, timeout_s=60)))
        assert await asyncio.gather(*tasks) == [2, 4, 6]
        assert model.calls == [[1, 2, 3]]  # dispatched as soon as the batch was full
        await batcher.stop()


async def test_stop_finishes_queued_work_then_refuses(
    batcher: Batcher[int, int], model: FakeModel
) -> None:
    model.hold()
    running = asyncio.create_task(batcher.submit(1, timeout_s=60))
    await model.wait_entered()
    queued = [asyncio.create_task(batcher.submit(i, timeout_s=60)) for i in (2, 3)]
    await wait_queued(batcher, 2)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown):
        await batcher.submit(9, timeout_s=60)
    model.gate.set()
    await stopping
    assert await asyncio.gather(running, *queued) == [2, 4, 6]


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(lambda items: items, executor=None, max_batch_size=0)
