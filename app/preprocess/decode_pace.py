"""How long image decodes take on this machine: seconds per reserved byte, per format.

Learned online from the decodes the service runs (those that reserved ``TIMED_BYTES`` or
more: below that, fixed costs dominate), as a moving average per image format: a GIF or an
RLE BMP takes several times longer per byte than a progressive JPEG. ``time_needed_s``
allows ``SAFETY`` times the average, so that a decode started with that much time left
rarely ends past its deadline (contention for the cores varies).
"""

from __future__ import annotations

import threading

TIMED_BYTES = 16 * 2**20
SAFETY = 1.5


class DecodePace:
    """Seconds per reserved byte, per image format (thread-safe)."""

    def __init__(self) -> None:
        self._rates: dict[str, float] = {}
        self._lock = threading.Lock()

    def learned(self, image_format: str, nbytes: int, seconds: float) -> None:
        """A decode of ``image_format`` that reserved ``nbytes`` took ``seconds``."""
        if nbytes < TIMED_BYTES:
            return
        rate = seconds / nbytes
        with self._lock:
            previous = self._rates.get(image_format)
            self._rates[image_format] = rate if previous is None else (previous + rate) / 2

    def time_needed_s(self, image_format: str, nbytes: int) -> float:
        """The time to allow a decode: ``SAFETY`` x the average pace of its format (of the
        slowest format seen, for a format not seen yet; 0 before any)."""
        rate = self._rates.get(image_format)
        if rate is None:
            with self._lock:
                rate = max(self._rates.values(), default=0.0)
        return SAFETY * rate * nbytes
