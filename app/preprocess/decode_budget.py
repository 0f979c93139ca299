"""What one image decode may take: room in the process-wide decode memory budget, and time
before its request's deadline.

``ImageDecoder`` estimates a decode's peak memory from the header and, before decoding any
pixel, asks ``DecodeBudget.reserve`` for it. Three answers stop it: over the whole budget
(413, for good), too late (the decode would end after the deadline at the pace decodes of
its format have taken here, ``DecodePace``: 503, nothing is started that nobody would wait
for), no room now (``RoomWanted``: the caller waits for room and tries again). After the
decode, ``release`` gives the room back (after a large decode, once its memory is back with
the operating system) and teaches the pace.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from app.errors import ImageTooLarge
from app.memory.memory_budget import MemoryBudget, RoomWanted
from app.memory.memory_trim import TRIM_AFTER_BYTES
from app.preprocess.decode_pace import DecodePace

DECODE_MEMORY_SETTING = "FUSIONSERVE_DECODE_MEMORY_MB"
MiB = 2**20


class TooLate(Exception):  # noqa: N818 (a signal: the caller answers 503)
    """The decode would not end before the request's deadline."""

    def __init__(self, needed_s: float, left_s: float) -> None:
        super().__init__(f"a decode of about {needed_s:.2f} s with {left_s:.2f} s left")


@dataclass(frozen=True)
class DecodeBudget:
    """The memory budget to reserve from, the pace decodes go at, and the
    ``time.perf_counter()`` deadline."""

    memory: MemoryBudget
    pace: DecodePace
    deadline: float

    def reserve(self, nbytes: int, image_format: str, size: tuple[int, int]) -> None:
        """Reserve ``nbytes`` for decoding an image of ``image_format`` and ``size``."""
        memory = self.memory
        if nbytes > memory.capacity:
            raise ImageTooLarge(
                f"decoding this {size[0]}x{size[1]} {image_format} image needs about "
                f"{math.ceil(nbytes / MiB)} MiB, more than "
                f"the decode memory budget of {memory.capacity // MiB} MiB "
                f"({DECODE_MEMORY_SETTING})"
            )
        needed = self.pace.time_needed_s(image_format, nbytes)
        left = self.deadline - time.perf_counter()
        if needed > left:
            raise TooLate(needed, left)
        if not memory.try_reserve(nbytes):
            raise RoomWanted(nbytes, needed)

    def release(self, nbytes: int, image_format: str, held_s: float) -> None:
        """Give back ``nbytes`` reserved ``held_s`` seconds ago, once the decode's memory is
        freed; after a large decode, that memory goes back to the operating system first."""
        self.memory.release(nbytes, trim_first=nbytes >= TRIM_AFTER_BYTES)
        self.pace.learned(image_format, nbytes, held_s)
