"""Give memory the allocator keeps back to the operating system once a burst is over.

glibc's malloc keeps freed memory in its arenas (one per thread that allocated, up to 8 per
core) for reuse: after a burst of large decodes in the preprocessing threads, or of large
bodies, that is hundreds of megabytes of resident memory no one uses, and a container's
memory limit counts it. ``malloc_trim`` hands it back. ``MemoryTrimmer`` calls it when
budgeted memory (``MemoryBudget``) is released: a large decode trims before its room is
given back (``trim_now``: otherwise the next decode, in another thread's arena, could take
new memory while this one's is still held); any other release of ``TRIM_AFTER_BYTES`` or
more trims at once, in a thread of its own; else, once that much has been released since
the last trim, nothing is reserved any more (a burst is over) and resident memory has grown
by ``IDLE_SLACK_BYTES`` since the last idle trim. Normal traffic is left
alone; the alternatives measured against this (a fixed mmap threshold, fewer arenas) are in
docs/operations.md (Memory).

Elsewhere than glibc (musl, macOS) there is no ``malloc_trim`` and nothing is trimmed.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

TRIM_AFTER_BYTES = 32 * 2**20
# After a burst, trim only if resident memory is this much over what it was after the last
# trim made while idle: normal traffic then never trims (each trim makes the next decodes
# fault their pages in again).
IDLE_SLACK_BYTES = 64 * 2**20


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:  # the symbols already loaded into the process, the C library's among them
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        logger.info("malloc_trim is not available: freed memory is left to the allocator")
        return None
    return trim


def release_free_memory() -> None:
    """Return the free memory of every malloc arena to the operating system (glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def resident_bytes() -> int | None:
    """This process's resident memory (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Reserved(Protocol):
    @property
    def used(self) -> int: ...


class MemoryTrimmer:
    """Trims after large releases, and after bursts (see the module's docstring)."""

    def __init__(
        self,
        trim: Callable[[], None] = release_free_memory,
        *,
        threshold: int = TRIM_AFTER_BYTES,
        slack: int = IDLE_SLACK_BYTES,
        resident: Callable[[], int | None] = resident_bytes,
    ) -> None:
        self._trim = trim
        self._resident = resident
        self.threshold = threshold
        self.slack = slack
        self._budgets: list[Reserved] = []
        self._lock = threading.Lock()
        self._released = 0  # bytes released since the last trim was started
        self._floor = 0  # resident memory after the last trim made while idle
        self._running = False
        self._again = False
        self.trims = 0

    def watch(self, budget: Reserved) -> None:
        """Count ``budget`` among those that must hold nothing for a burst to be over."""
        self._budgets.append(budget)

    def trim_now(self) -> None:
        """Trim in the calling thread (it blocks for the few milliseconds that takes)."""
        self._trim()
        with self._lock:
            self.trims += 1
            self._released = 0

    def released(self, nbytes: int) -> None:
        """``nbytes`` of budgeted memory were just freed (any thread; never blocks)."""
        with self._lock:
            self._released += nbytes
            large = nbytes >= self.threshold
            if not large and self._released < self.threshold:
                return
            idle = all(budget.used == 0 for budget in self._budgets)
            if not (large or idle):
                return
            self._released = 0
        if not large and not self._grown():
            return  # the burst left about what normal traffic holds: nothing worth trimming
        with self._lock:
            if self._running:  # the running trim may have missed this: once more after it
                self._again = True
                return
            self._running = True
        threading.Thread(target=self._run, name="fusionserve-trim", daemon=True).start()

    def _grown(self) -> bool:
        resident = self._resident()
        return resident is None or resident > self._floor + self.slack

    def _run(self) -> None:
        while True:
            self._trim()
            if all(budget.used == 0 for budget in self._budgets):
                self._floor = self._resident() or 0
            with self._lock:
                self.trims += 1
                if not self._again:
                    self._running = False
                    return
                self._again = False
