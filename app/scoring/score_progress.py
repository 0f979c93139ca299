"""A scoring job's progress for people: a tqdm bar (rows/s, ETA) when stderr is a terminal and
tqdm is installed, else a plain line every few seconds; and the summary at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class ScoreSummary:
    """What a run did: rows answered and in error (this run), rows of shards already
    committed by an earlier run and skipped, and the run's wall time."""

    ok: int
    error: int
    skipped: int
    seconds: float

    @property
    def rows(self) -> int:
        return self.ok + self.error

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The summary as one line."""
        skipped = f", {self.skipped} skipped (already committed)" if self.skipped else ""
        return (
            f"scored {self.rows} rows: {self.ok} ok, {self.error} error{skipped}; "
            f"{self.rows_per_s:.1f} rows/s, wall time {self.seconds:.2f} s"
        )


class Progress:
    """Counts rows as shards finish and shows it on ``stream``."""

    def __init__(
        self,
        total: int | None,
        every_s: float,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self.last_shown = self.started
        self.ok = 0
        self.error = 0
        self.skipped = 0
        self.total = total
        self._bar = _bar(total, self.stream)

    def skip(self, rows: int) -> None:
        """Rows of a shard committed by an earlier run."""
        self.skipped += rows
        if self._bar is not None:
            self._bar.update(rows)

    def advance(self, ok: int, error: int) -> None:
        """Rows of a shard just committed."""
        self.ok += ok
        self.error += error
        if self._bar is not None:
            self._bar.update(ok + error)
            self._bar.set_postfix(error=self.error, refresh=False)
            return
        now = self.clock()
        if now - self.last_shown >= self.every_s:
            self.last_shown = now
            self._line(now)

    def summary(self) -> ScoreSummary:
        """The run so far."""
        return ScoreSummary(self.ok, self.error, self.skipped, self.clock() - self.started)

    def close(self) -> None:
        """End the bar, if there is one."""
        if self._bar is not None:
            self._bar.close()

    def _line(self, now: float) -> None:
        done = self.ok + self.error
        elapsed = max(now - self.started, 1e-9)
        total = "" if self.total is None else f"/{self.total - self.skipped}"
        print(
            f"scored {done}{total} rows ({self.error} error), {done / elapsed:.1f} rows/s",
            file=self.stream,
            flush=True,
        )


def _bar(total: int | None, stream: TextIO) -> Any:
    """A tqdm bar on ``stream`` if it is a terminal and tqdm is installed, else None."""
    if not stream.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=stream, unit="rows", dynamic_ncols=True)
