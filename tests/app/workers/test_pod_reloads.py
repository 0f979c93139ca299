"""Reloads across worker processes, in shared memory: announced by the worker that reloaded,
followed by the others, waited for (a real two-worker reload is in tests/e2e/test_workers.py)."""

from __future__ import annotations

import asyncio
import multiprocessing

import pytest

from app.errors import ReloadFailed, ReloadInProgress
from app.workers.pod_reloads import PodReloads, follow_reloads

pytestmark = pytest.mark.anyio

WORKERS, BUNDLES = 3, 2


def pod() -> list[PodReloads]:
    spawn = multiprocessing.get_context("spawn")
    announced, done = spawn.Array("i", BUNDLES), spawn.Array("i", WORKERS * BUNDLES)
    return [PodReloads(announced, done, index) for index in range(WORKERS)]


def test_an_announced_reload_is_pending_for_the_others_until_recorded() -> None:
    first, second, third = pod()
    assert (first.workers, first.bundles) == (WORKERS, BUNDLES)
    assert first.announce(1) == 1
    assert first.pending() == []
    assert second.pending() == third.pending() == [(1, 1)]
    assert first.followers(1, 1) == (0, [])
    second.record(1, 1, ok=True)
    third.record(1, 1, ok=False)
    assert second.pending() == third.pending() == []  # a failed one is not retried
    assert first.followers(1, 1) == (1, [2])
    assert first.announce(1) == 2  # the next reload of the same bundle
    assert third.pending() == [(1, 2)]


def test_a_worker_started_later_counts_earlier_reloads_as_done() -> None:
    first, second, third = pod()
    first.announce(0)
    first.announce(1)
    third.catch_up()
    assert third.pending() == []
    assert second.pending() == [(0, 1), (1, 1)]


async def test_the_others_follow_and_the_announcer_waits_for_them() -> None:
    first, second, third = pod()
    reloaded: list[tuple[int, int]] = []
    refused_once = {2}

    def reloader(worker: int) -> object:
        async def reload(bundle: int) -> None:
            if worker in refused_once:  # busy with a reload of its own: tried again
                refused_once.discard(worker)
                raise ReloadInProgress("already reloading")
            if worker == 2 and bundle == 1:
                raise ReloadFailed("bad files")
            reloaded.append((worker, bundle))

        return reload

    followers = [
        asyncio.create_task(follow_reloads(reloads, reloader(i)))  # type: ignore[arg-type]
        for i, reloads in ((1, second), (2, third))
    ]
    try:
        number = first.announce(0)
        assert await asyncio.wait_for(first.wait_for_followers(0, number), 10) == (2, [])
        number = first.announce(1)
        assert await asyncio.wait_for(first.wait_for_followers(1, number), 10) == (1, [2])
    finally:
        for task in followers:
            task.cancel()
    assert sorted(reloaded) == [(1, 0), (1, 1), (2, 0)]
    assert third.pending() == []


def test_a_failure_belongs_to_its_own_reload() -> None:
    first, second, _ = pod()
    first.announce(0)
    second.record(0, 1, ok=False)
    assert first.followers(0, 1) == (0, [1])
    number = first.announce(0)  # reload 2: the old failure says nothing about it
    assert first.followers(0, number) == (0, [])
    assert second.pending() == [(0, 2)]
    second.record(0, 2, ok=False)
    assert second.pending() == []  # failed once: not tried again and again
    assert first.followers(0, number) == (0, [1])
