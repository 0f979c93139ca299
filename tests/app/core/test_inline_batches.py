"""Batches of a fast model on the event loop: where they run, how they are timed, when they go
back to the executor, and what the runner decides from its warm-up (fake clock, fake model)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config.settings import Settings
from app.core.batching import INLINE_WEIGHT, Batcher
from app.core.engine import build_engine
from app.core.lifecycle import Lifecycle
from app.core.model_runner import ModelRunner
from app.errors import InferenceFailed
from app.main import create_app
from app.memory.memory_budget import MemoryBudget
from app.preprocess.decode_pace import DecodePace
from tests.support.app_setup import make_settings, wait_ready
from tests.support.fake_batching import FakeClock
from tests.support.gated_service import default_runner
from tests.support.images import encode_image, photo

pytestmark = pytest.mark.anyio

FILES = {"image": ("i.png", encode_image(photo(40, 30)), "image/png")}


class TimedModel:
    """Doubles its inputs, records the thread of each call, and advances ``clock`` by the
    next of ``run_s`` (the last one repeats) while it runs."""

    def __init__(self, clock: FakeClock, run_s: Sequence[float]) -> None:
        self.clock = clock
        self.run_s = list(run_s)
        self.threads: list[int] = []

    def __call__(self, items: list[int]) -> Sequence[int]:
        self.threads.append(threading.get_ident())
        self.clock.now += self.run_s.pop(0) if len(self.run_s) > 1 else self.run_s[0]
        return [i * 2 for i in items]


async def run_batches(batcher: Batcher[int, int], count: int) -> list[int]:
    results = []
    for i in range(count):
        results.append(await asyncio.wait_for(batcher.submit(i, timeout_s=60), timeout=5))
    return results


async def test_fast_batches_run_on_the_loop_thread(clock: FakeClock) -> None:
    model = TimedModel(clock, [0.0002])
    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=4, clock=clock, inline_max_s=0.001
        )
        batcher.start()
        assert await run_batches(batcher, 3) == [0, 2, 4]
        await batcher.stop()
    assert batcher.inline
    assert model.threads == [threading.get_ident()] * 3
    assert batcher.stats.batches == 3


async def test_without_inline_batches_run_in_the_executor(clock: FakeClock) -> None:
    model = TimedModel(clock, [0.0002])
    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=4, clock=clock
        )
        batcher.start()
        assert await run_batches(batcher, 2) == [0, 2]
        await batcher.stop()
    assert not batcher.inline
    assert threading.get_ident() not in model.threads


async def test_the_running_mean_starts_from_the_seed(clock: FakeClock) -> None:
    model = TimedModel(clock, [0.0005])
    batcher: Batcher[int, int] = Batcher(
        model,
        executor=None,
        max_batch_size=4,
        clock=clock,
        inline_max_s=0.001,
        inline_seed_s=0.0003,
    )
    batcher.start()
    await run_batches(batcher, 1)
    await batcher.stop()
    assert batcher.inline_mean_s == pytest.approx(0.0003 + INLINE_WEIGHT * (0.0005 - 0.0003))


async def test_one_slow_batch_does_not_move_the_batches(clock: FakeClock) -> None:
    # A pause of 5 ms (5x the allowance) in one batch among fast ones: the mean stays under
    # twice the allowance.
    model = TimedModel(clock, [0.0002, 0.005, 0.0002])
    batcher: Batcher[int, int] = Batcher(
        model, executor=None, max_batch_size=4, clock=clock, inline_max_s=0.001
    )
    batcher.start()
    await run_batches(batcher, 6)
    await batcher.stop()
    assert batcher.inline
    assert batcher.inline_mean_s < 0.002


async def test_batches_that_stay_slow_go_back_to_the_executor(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    model = TimedModel(clock, [0.004])  # 4x the allowance, every batch
    loop_thread = threading.get_ident()
    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=4, clock=clock, inline_max_s=0.001
        )
        batcher.start()
        with caplog.at_level("INFO", logger="app.core.batching"):
            assert await run_batches(batcher, 8) == [2 * i for i in range(8)]
        await batcher.stop()
    assert not batcher.inline
    # The mean, from 1 ms, moves 10% of the way to 4 ms a batch: 1.3, 1.57, 1.81, 2.03 ms,
    # over 2 ms after the 4th batch; every batch after it ran in the executor.
    on_loop = [thread == loop_thread for thread in model.threads]
    switched = on_loop.index(False)
    assert switched == 4
    assert all(on_loop[:switched])
    assert not any(on_loop[switched:])
    assert "they run in the inference pool from now on" in caplog.text


async def test_an_inline_batch_lets_waiting_requests_in_between(clock: FakeClock) -> None:
    # Eight items queued at once, batches of two: the batcher yields the loop after each
    # batch, so the submitters of a finished batch are answered before the next batch runs.
    order: list[str] = []

    def model(items: list[int]) -> Sequence[int]:
        order.append(f"batch {items}")
        return [i * 2 for i in items]

    batcher: Batcher[int, int] = Batcher(
        model, executor=None, max_batch_size=2, clock=clock, inline_max_s=0.001
    )

    async def submit(i: int) -> None:
        await batcher.submit(i, timeout_s=60)
        order.append(f"answered {i}")

    tasks = [asyncio.create_task(submit(i)) for i in range(4)]
    batcher.start()  # its loop runs after the four submitters have queued their items
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    await batcher.stop()
    assert order == [
        "batch [0, 1]",
        "answered 0",
        "answered 1",
        "batch [2, 3]",
        "answered 2",
        "answered 3",
    ]


async def test_a_failing_inline_batch_fails_only_the_bad_item(clock: FakeClock) -> None:
    def model(items: list[int]) -> Sequence[int]:
        if any(i < 0 for i in items):
            raise ValueError("poisoned item")
        return [i * 2 for i in items]

    batcher: Batcher[int, int] = Batcher(
        model, executor=None, max_batch_size=4, clock=clock, inline_max_s=0.001
    )
    tasks = [asyncio.create_task(batcher.submit(i, timeout_s=60)) for i in (1, -1, 3)]
    batcher.start()  # its loop runs after the three are queued: one batch of three
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
    await batcher.stop()
    assert results[0] == 2
    assert results[2] == 6
    assert isinstance(results[1], InferenceFailed)


def runner_for(tiny_bundle_dir: Path, warm_batch_s: float | None, **overrides: Any) -> ModelRunner:
    settings = Settings(bundle_path=tiny_bundle_dir, warmup=False, **overrides)
    return ModelRunner(
        build_engine(settings),
        settings,
        lifecycle=Lifecycle(),
        decode_memory=MemoryBudget(64 * 2**20),
        decode_pace=DecodePace(),
        warm_batch_s=warm_batch_s,
    )


@pytest.mark.parametrize(
    ("warm_batch_s", "max_ms", "inline"),
    [
        (0.0004, 1.0, True),  # within the allowance
        (0.001, 1.0, True),  # at it
        (0.0011, 1.0, False),  # over it
        (None, 1.0, False),  # no warm-up: nothing known, the pool
        (0.0004, 0.0, False),  # turned off
    ],
)
async def test_the_runner_decides_from_its_warm_up(
    tiny_bundle_dir: Path, warm_batch_s: float | None, max_ms: float, inline: bool
) -> None:
    runner = runner_for(tiny_bundle_dir, warm_batch_s, inline_batch_max_ms=max_ms)
    assert runner.batcher.inline is inline
    assert runner.stats()["batches_inline"] is inline
    if inline:
        assert runner.batcher.inline_mean_s == warm_batch_s


@pytest.mark.parametrize(("max_ms", "inline"), [(100.0, True), (0.0, False)])
def test_a_served_bundle_runs_inline_from_its_warm_up(
    tiny_bundle_dir: Path, max_ms: float, inline: bool
) -> None:
    # The registry hands the warm-up's batch time to the runner: the tiny bundle's full batch
    # (a fraction of a millisecond) is well within a 100 ms allowance, and 0 turns it off.
    settings = make_settings(tiny_bundle_dir, inline_batch_max_ms=max_ms)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        response = client.post("/classify", files=FILES, data={"text": "a red bird"})
        info = client.get("/info").json()
        runner = default_runner(client.app)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert info["stats"]["batches_inline"] is inline
    assert info["settings"]["inline_batch_max_ms"] == max_ms
    assert runner.batcher.inline is inline
    if inline:  # seeded from the warm-up's full batch, then moved by this request's batch
        assert 0 < runner.batcher.inline_mean_s < 0.1
