"""Give memory the allocator keeps back to the operating system after a large decode.

glibc's malloc keeps freed memory in its arenas (one per thread that allocated, up to 8 per
core) for reuse; after a burst of large decodes in the preprocessing threads that is hundreds
of megabytes of resident memory no one uses, and a container's memory limit counts it. Large
blocks could be forced to ``mmap`` (a fixed ``M_MMAP_THRESHOLD``), but then every normal
photo's decode maps and faults its buffers afresh; trimming only after large decodes leaves
the common path alone. Measured in bench/decode_memory.py (README, Operations).

Elsewhere than glibc (musl, macOS) there is no ``malloc_trim`` and this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

TRIM_AFTER_BYTES = 32 * 2**20  # decodes estimated at this or more are followed by a trim


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
