"""Reloads across worker processes: a bundle reload reaches every worker.

The worker that answers ``POST /v1/models/{name}/reload`` reloads its own copy first (as one
process does: the old version serves on if the new one fails). Then it announces the reload
in shared memory, a count of reloads per bundle (bundles are in the same order in every
worker), and every other worker, watching every ``WATCH_S`` seconds, reloads its own copy
and records the outcome; the answering worker waits for them (up to ``WAIT_S``) and says how
many followed. A worker started later loads the bundles' files as they are then, so it
counts every reload so far as done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from multiprocessing.sharedctypes import SynchronizedArray

from app.errors import FusionServeError, ReloadInProgress

logger = logging.getLogger(__name__)

WATCH_S = 0.25
WAIT_S = 120.0

ReloadBundle = Callable[[int], Awaitable[object]]  # reload the bundle at this position


class PodReloads:
    """One worker's view of the pod's reloads. ``announced[b]`` counts the reloads of bundle
    ``b``; ``done[w * bundles + b]`` is the last of them worker ``w`` has done (negative
    for one it could not)."""

    def __init__(
        self,
        announced: SynchronizedArray[int],
        done: SynchronizedArray[int],
        index: int,
    ) -> None:
        self._announced = announced
        self._done = done
        self.index = index
        self.bundles = len(announced)
        self.workers = len(done) // self.bundles

    def _slot(self, worker: int, bundle: int) -> int:
        return worker * self.bundles + bundle

    def announce(self, bundle: int) -> int:
        """This worker has reloaded ``bundle``: the others are to follow. The reload's number."""
        with self._announced.get_lock():
            self._announced[bundle] += 1
            number = self._announced[bundle]
        self._done[self._slot(self.index, bundle)] = number
        return number

    def catch_up(self) -> None:
        """This worker loaded every bundle's files as they are now: every reload so far is
        done here."""
        for bundle in range(self.bundles):
            self._done[self._slot(self.index, bundle)] = self._announced[bundle]

    def pending(self) -> list[tuple[int, int]]:
        """(bundle, reload number) for each bundle announced since this worker last did it."""
        found = []
        for bundle in range(self.bundles):
            number = self._announced[bundle]
            if number > abs(self._done[self._slot(self.index, bundle)]):
                found.append((bundle, number))
        return found

    def record(self, bundle: int, number: int, ok: bool) -> None:
        self._done[self._slot(self.index, bundle)] = number if ok else -number

    def followers(self, bundle: int, number: int) -> tuple[int, list[int]]:
        """How many other workers have done reload ``number`` of ``bundle``, and which
        failed it."""
        done, failed = 0, []
        for worker in range(self.workers):
            if worker == self.index:
                continue
            record = self._done[self._slot(worker, bundle)]
            if -record >= number:  # it failed this reload (or a later one)
                failed.append(worker)
            elif record >= number:
                done += 1
        return done, failed

    async def wait_for_followers(self, bundle: int, number: int) -> tuple[int, list[int]]:
        """``followers`` once every other worker has done or failed the reload, or ``WAIT_S``
        has passed."""
        deadline = time.monotonic() + WAIT_S
        while True:
            done, failed = self.followers(bundle, number)
            if done + len(failed) >= self.workers - 1 or time.monotonic() > deadline:
                return done, failed
            await asyncio.sleep(WATCH_S)


async def follow_reloads(reloads: PodReloads, reload: ReloadBundle) -> None:
    """Do every reload another worker announces, until cancelled."""
    while True:
        for bundle, number in reloads.pending():
            try:
                await reload(bundle)
            except ReloadInProgress:
                continue  # this worker is reloading it already: look again next time
            except (FusionServeError, OSError) as exc:
                logger.error("reload %d of bundle %d, from another worker: %s", number, bundle, exc)
                reloads.record(bundle, number, ok=False)
            else:
                reloads.record(bundle, number, ok=True)
        await asyncio.sleep(WATCH_S)
