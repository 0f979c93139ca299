"""Admission by expected wait: take a request while the work ahead of it drains in time.

A fixed count of items in flight is a delay bound only for the model it was tuned to: 24 items
are ~0.45 s of work for a model that does 55 items/s, and milliseconds for one that does
5,000. So the service measures what an item costs this bundle on this machine and admits a
request while the work already accepted, at that cost, would be done within the wait target
(``max_queue_wait_s``) and within the request's own deadline. Beyond that the answer is a fast
503 whose ``Retry-After`` is the predicted time for the work ahead to drain.

The cost of an item is learned online, by Little's law rather than from the model's run times
(under load those include waits for the GIL and the cores, which say little about how fast
work drains): the seconds the service was busy (at least one item in flight) over the items it
answered in them, every ``SAMPLE_ITEMS`` answers, as an exponentially weighted mean; timed
from each busy period's first answer (``Admission.release``). So the
cost of every stage is in it (parsing, decoding, batching's amortisation, the model), and time
with nothing in flight is not. ``max_in_flight`` stays as a hard ceiling on items accepted at
once (it bounds the memory they hold whatever the pace).

A pace only refuses once answers have confirmed it. A runner that starts (a first start, a
worker process started again) has only a seed from its warm-up, which runs on arenas not
grown yet and, under traffic, on cores busy with other work: until its first sample (after
``FIRST_SAMPLE_ITEMS`` answers) the ceiling alone applies, and the seed only sizes
``Retry-After``. A runner that replaces another (a reload) inherits the pace the other
measured, scaled by what the two cost on the same batch timed back to back
(``app.core.engine.relative_cost``), confirmed as far as it was; its own samples then blend in.

One ``Admission`` per served bundle (``app.core.model_runner``) holds what every reader needs: the
items in flight, the pace, the refusals counted once where they are decided, and the
service's lifecycle (nothing is admitted once it stops accepting). The request gate (before a
body is read), the runner (after parsing, and when a decode cannot start) and the metrics all
read it; the batcher's queue is bounded by it (queued items are items in flight).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.core.lifecycle import Lifecycle
from app.errors import Overloaded, RequestError


class ItemPace:
    """Seconds of busy time one item costs, as a running mean of samples; ``confirmed`` once
    a sample (or the measured pace it was inherited from) backs it, not while it is a seed."""

    WEIGHT = 0.2  # of the newest sample in the running mean (about the last 10 samples)

    def __init__(self, seed_item_s: float | None = None) -> None:
        self._item_s = seed_item_s
        self.samples = 0

    @classmethod
    def inherited(cls, previous: ItemPace, scale: float) -> ItemPace:
        """The pace of a runner that replaces the one ``previous`` belongs to: its estimate
        times ``scale`` (what an item costs the new runner over what it costs the old),
        with its samples, so that a measured pace stays confirmed and new samples blend into
        it rather than replace it."""
        pace = cls(None if previous.item_s is None else previous.item_s * scale)
        pace.samples = previous.samples
        return pace

    @property
    def item_s(self) -> float | None:
        """The current estimate; None before any sample or seed."""
        return self._item_s

    @property
    def confirmed(self) -> bool:
        return self.samples > 0 and self._item_s is not None

    def observe(self, items: int, busy_s: float) -> None:
        """``items`` were answered in ``busy_s`` seconds of busy time."""
        if items <= 0 or busy_s < 0:
            return
        sample = busy_s / items
        current = self._item_s
        self._item_s = (
            sample if current is None or self.samples == 0
            else current + self.WEIGHT * (sample - current)
        )  # fmt: skip
        self.samples += 1


@dataclass(frozen=True)
class AdmissionLimits:
    max_in_flight: int  # hard ceiling on items accepted at once
    max_queue_wait_s: float  # the wait a newly admitted item may be predicted to have
    request_timeout_s: float  # each request's deadline, decoding and queueing included
    retry_after_s: int  # the least Retry-After a refusal carries
    overload_status: int = 503  # a refusal's HTTP status: 503 or 429
    priority_levels: int = 1  # level 0 is the most urgent; see ``share``

    def share(self, level: int) -> float:
        """The part of the limits a request of priority ``level`` may use: all of them at
        level 0, down to 1/levels at the last, so that under overload the lowest levels are
        refused first, while the higher ones still find room."""
        return (self.priority_levels - level) / self.priority_levels


class Admission:
    """Items in flight and the decision to take ``items`` more; it also measures
    the pace (busy time per answered item) as items are admitted and released. Used on the
    event loop only."""

    SAMPLE_ITEMS = 16  # answers per pace sample
    FIRST_SAMPLE_ITEMS = 8  # answers in the first: it replaces a seed, so it comes sooner

    def __init__(
        self,
        limits: AdmissionLimits,
        pace: ItemPace,
        lifecycle: Lifecycle,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.limits = limits
        self.pace = pace
        self.lifecycle = lifecycle
        self.clock = clock
        self.in_flight = 0
        self.rejected = 0  # overload refusals answered (counted once, where they are decided)
        self._window_open = False  # the current busy period has had its first answer
        self._window_since = 0.0  # when the current window (or its last sample) began
        self._busy_s = 0.0  # windowed busy time of past periods not yet in a sample
        self._answered = 0  # answers in windows not yet in a sample

    def predicted_wait_s(self, items: int = 1) -> float:
        """Service time ahead of the last of ``items`` more items if they were admitted now:
        every item in flight, then the others of the same request, at the pace as far as it
        is known (a seed included); 0 when nothing is known of it."""
        item_s = self.pace.item_s
        if item_s is None:
            return 0.0
        return (self.in_flight + items - 1) * item_s

    def refusal(self, items: int = 1, level: int = 0) -> RequestError | None:
        """Why ``items`` more items of priority ``level`` (0 the most urgent) would be
        refused now, or None if they would be admitted. A level may fill only its share of
        the in-flight ceiling and of the wait (``AdmissionLimits.share``). A refusal is
        counted: the caller answers it."""
        if not self.lifecycle.accepting:
            return self.lifecycle.unavailable()
        limits = self.limits
        share = limits.share(level)
        ceiling = max(1, math.floor(limits.max_in_flight * share))
        if self.in_flight + items > ceiling:
            return self._refuse(
                items,
                f"{self.in_flight} items in flight, the limit{_of_level(level)} is {ceiling}",
            )
        if not self.pace.confirmed:  # a seed is not enough to refuse on: the ceiling only
            return None
        wait_s = self.predicted_wait_s(items)
        allowed_s = min(limits.max_queue_wait_s * share, limits.request_timeout_s)
        if wait_s > allowed_s:
            return self._refuse(
                items,
                f"the work ahead would take about {wait_s:.2f} s, over the "
                f"{allowed_s:g} s this service lets a request{_of_level(level)} wait",
            )
        return None

    def drain_s(self) -> float:
        """Predicted seconds until the items in flight are done (0 when the pace is unknown):
        the wait one more item would be predicted to have."""
        return self.predicted_wait_s(1)

    def retry_after_s(self) -> int:
        """Whole seconds until the work in flight is predicted to have drained, at least the
        configured ``retry_after_s``."""
        return max(self.limits.retry_after_s, math.ceil(self.drain_s()))

    def count_refused(self, items: int) -> None:
        """``items`` admitted earlier were refused later for overload (an image decode that
        could not start in time or find memory): counted with admission's own refusals."""
        self.rejected += items

    def _refuse(self, items: int, why: str) -> Overloaded:
        self.count_refused(items)
        return Overloaded(
            f"{why}; retry later",
            headers={"Retry-After": str(self.retry_after_s())},
            status_code=self.limits.overload_status,
        )

    def admit(self, items: int) -> None:
        """Count ``items`` as in flight (after ``refusal`` said None)."""
        if self.in_flight == 0:  # a busy period begins; its first answer opens its window
            self._window_open = False
        self.in_flight += items

    def release(self, items: int) -> None:
        """``items`` were answered (or failed: they took the service's time all the same).

        The pace is measured from answer to answer: a busy period's first answer opens its
        window, and the answers after it are counted over the time since. The time before
        the first answer is left out: a burst admitted at once (64 clients starting
        together) has most of its items in progress then, none answered, and counting that
        time would make an item look several times what it costs."""
        self.in_flight -= items
        now = self.clock()
        if not self._window_open:
            self._window_open = True
            self._window_since = now
        else:
            self._answered += items
        sample_items = self.SAMPLE_ITEMS if self.pace.samples else self.FIRST_SAMPLE_ITEMS
        if self._answered >= sample_items:
            self.pace.observe(self._answered, self._busy_s + (now - self._window_since))
            self._busy_s, self._answered = 0.0, 0
            self._window_since = now
        elif self.in_flight == 0:  # idle now, too few answers yet: keep this period's time
            self._busy_s += now - self._window_since


def _of_level(level: int) -> str:
    """How a refusal names a priority level (the top level, 0: not at all, as ever)."""
    return f" for priority {level + 1}" if level > 0 else ""
