"""A process-wide allowance of bytes: reserved before memory is used, given back after.

The pixel cap bounds one image; what a replica holds is the sum over everything in progress.
FusionServe keeps two such sums under a budget each: image decodes (their estimated peak,
``app.preprocess.decode_estimate``) and request bodies held in memory (``app.api.gate``).

Reservations never block: ``try_reserve`` answers at once, from any thread. A caller that
got no room gives up what it holds and waits on the event loop with ``wait_for_room``, which
only says that room was seen (others may take it first): it then tries again, within its own
deadline. So no thread ever sleeps on the budget, and a reservation is always taken and
given back by the same code, in the same thread, around the work it covers.
"""

from __future__ import annotations

import asyncio
import threading


class RoomWanted(Exception):  # noqa: N818 (a signal, not an error: the caller waits and retries)
    """Raised by work that could not reserve ``nbytes`` now and did nothing yet."""

    def __init__(self, nbytes: int) -> None:
        super().__init__(f"{nbytes} bytes of budget wanted")
        self.nbytes = nbytes


TIMED_BYTES = 16 * 2**20  # reservations this large teach how long reservations are held


class MemoryBudget:
    """``capacity`` bytes, reserved and released from any thread.

    Work that says how long it held its reservation (``release(..., held_s=)``) teaches the
    budget a rate in seconds per byte (a moving average over reservations of at least
    ``TIMED_BYTES``), from which ``expected_hold_s`` predicts how long a reservation of a
    given size will be held: a waiter that could not finish before its deadline even if
    room came at once need not wait at all."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1 byte")
        self.capacity = capacity
        self._used = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.refusals = 0  # try_reserve calls that found no room
        self._seconds_per_byte = 0.0

    @property
    def used(self) -> int:
        return self._used

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_reserve(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` if they are free now; never waits."""
        with self._lock:
            if self._used + nbytes > self.capacity:
                self.refusals += 1
                return False
            self._used += nbytes
            return True

    def expected_hold_s(self, nbytes: int) -> float:
        """How long a reservation of ``nbytes`` is likely to be held (0 before any timing)."""
        return nbytes * self._seconds_per_byte

    def release(self, nbytes: int, held_s: float | None = None) -> None:
        """Give back ``nbytes`` reserved earlier (``held_s`` seconds ago, when known), and
        wake the waiters that now fit."""
        with self._lock:
            if held_s is not None and nbytes >= TIMED_BYTES:
                rate = held_s / nbytes
                previous = self._seconds_per_byte
                self._seconds_per_byte = rate if previous == 0.0 else (previous + rate) / 2
            self._used -= nbytes
            free = self.capacity - self._used
            woken = [w for w in self._waiters if w[0] <= free]
            self._waiters = [w for w in self._waiters if w[0] > free]
        for _, future in woken:
            future.get_loop().call_soon_threadsafe(_wake, future)

    async def wait_for_room(self, nbytes: int, timeout_s: float) -> bool:
        """Wait until ``nbytes`` are free (True) or ``timeout_s`` passes (False). Reserves
        nothing: call ``try_reserve`` again, and expect to lose a race now and then."""
        if nbytes > self.capacity:
            raise ValueError(f"{nbytes} bytes can never fit in a budget of {self.capacity}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (nbytes, future)
        with self._lock:
            if self._used + nbytes <= self.capacity:
                return True
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, max(timeout_s, 0.0))
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # the waiter may have timed out or been cancelled meanwhile
        future.set_result(None)
