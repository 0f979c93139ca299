"""A process-wide allowance of bytes: reserved before memory is used, given back after.

The pixel cap bounds one image; what a replica holds is the sum over everything in progress.
FusionServe keeps two such sums under a budget each: image decodes (their estimated peak,
``app.preprocess.decode_estimate``) and request bodies held in memory (``app.asgi.gate``).

Reservations never block: ``try_reserve`` answers at once, from any thread. A caller that
got no room gives up what it holds and waits on the event loop with ``wait_for_room``, which
only says that room was seen (others may take it first): it then tries again, within its own
deadline. So no thread ever sleeps on the budget, and a reservation is always taken and
given back by the same code, in the same thread, around the work it covers.
"""

from __future__ import annotations

import asyncio
import threading

from app.memory.memory_trim import MemoryTrimmer


class RoomWanted(Exception):  # noqa: N818 (a signal, not an error: the caller waits and retries)
    """Raised by work that could not reserve ``nbytes`` now and did nothing yet; it would
    then need about ``seconds`` to finish."""

    def __init__(self, nbytes: int, seconds: float = 0.0) -> None:
        super().__init__(f"{nbytes} bytes of budget wanted")
        self.nbytes = nbytes
        self.seconds = seconds


class MemoryBudget:
    """``capacity`` bytes, reserved and released from any thread. A ``trimmer`` hears of
    every release, to hand freed memory back to the operating system."""

    def __init__(self, capacity: int, trimmer: MemoryTrimmer | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1 byte")
        self.capacity = capacity
        self._trimmer = trimmer
        if trimmer is not None:
            trimmer.watch(self)
        self._used = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

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
                return False
            self._used += nbytes
            return True

    def release(self, nbytes: int, *, trim_first: bool = False) -> None:
        """Give back ``nbytes`` reserved earlier, and wake the waiters that now fit. With
        ``trim_first``, the freed memory goes back to the operating system (in this thread)
        before the room is given back."""
        trimmer = self._trimmer
        if trim_first and trimmer is not None:
            trimmer.trim_now()
        woken: list[tuple[int, asyncio.Future[None]]] = []
        with self._lock:
            self._used -= nbytes
            if self._waiters:
                free = self.capacity - self._used
                woken = [w for w in self._waiters if w[0] <= free]
                self._waiters = [w for w in self._waiters if w[0] > free]
        for _, future in woken:
            future.get_loop().call_soon_threadsafe(_wake, future)
        if trimmer is not None and not trim_first:
            trimmer.released(nbytes)

    def passed_through(self, nbytes: int) -> None:
        """``nbytes`` were held and dropped without a reservation (a refused request's body,
        read and discarded): the allocator kept them all the same, so the trimmer counts
        them as released."""
        if self._trimmer is not None and nbytes > 0:
            self._trimmer.released(nbytes)

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
