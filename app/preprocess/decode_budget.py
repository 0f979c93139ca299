"""What one image decode may take: room in the process-wide decode memory budget, and time
before its request's deadline.

``ImageDecoder`` estimates a decode's peak memory from the header and, before decoding any
pixel, asks ``DecodeBudget.reserve`` for it. Three answers stop it: over the whole budget
(413, for good), too late (the decode would end after the deadline, at the pace decodes of
that size have taken: 503, nothing is started that nobody would wait for), no room now
(``RoomWanted``: the caller waits for room and tries again). After the decode, ``release``
gives the room back and, after a large decode, hands the freed memory back to the operating
system (``app.memory_trim``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from app.errors import ImageTooLarge
from app.memory_budget import MemoryBudget, RoomWanted
from app.memory_trim import TRIM_AFTER_BYTES, release_free_memory

DECODE_MEMORY_SETTING = "FUSIONSERVE_DECODE_MEMORY_MB"
MiB = 2**20


class TooLate(Exception):  # noqa: N818 (a signal: the caller answers 503)
    """The decode would not end before the request's deadline."""

    def __init__(self, expected_s: float, left_s: float) -> None:
        super().__init__(f"a decode of about {expected_s:.2f} s with {left_s:.2f} s left")
        self.expected_s = expected_s
        self.left_s = left_s


@dataclass(frozen=True)
class DecodeBudget:
    """The memory budget to reserve from, and the ``time.perf_counter()`` deadline."""

    memory: MemoryBudget
    deadline: float

    def reserve(self, nbytes: int, image: str) -> None:
        """Reserve ``nbytes`` for decoding ``image`` (described for the 413 message)."""
        memory = self.memory
        if nbytes > memory.capacity:
            raise ImageTooLarge(
                f"decoding this {image} needs about {math.ceil(nbytes / MiB)} MiB, more than "
                f"the decode memory budget of {memory.capacity // MiB} MiB "
                f"({DECODE_MEMORY_SETTING})"
            )
        expected, left = memory.expected_hold_s(nbytes), self.deadline - time.perf_counter()
        if expected > left:
            raise TooLate(expected, left)
        if not memory.try_reserve(nbytes):
            raise RoomWanted(nbytes)

    def release(self, nbytes: int, held_s: float) -> None:
        """Give back ``nbytes`` reserved ``held_s`` seconds ago (once the decode's memory is
        freed), and the allocator's free memory after a large decode."""
        self.memory.release(nbytes, held_s=held_s)
        if nbytes >= TRIM_AFTER_BYTES:
            release_free_memory()
