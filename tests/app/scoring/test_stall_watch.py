"""within_deadline: items pass through in order, the source's error reaches the consumer, a
source that stops producing ends the wait with the stall error, and a consumer that stops
early stops the thread at its next item."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from app.scoring.stall_watch import within_deadline


class Stalled(Exception):
    pass


def _stalled(timeout_s: float) -> Stalled:
    return Stalled(f"nothing for {timeout_s} s")


def test_items_pass_through_in_order() -> None:
    assert list(within_deadline(iter(range(50)), 5.0, _stalled)) == list(range(50))


def test_the_source_s_error_reaches_the_consumer() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise KeyError("lost")

    items = within_deadline(source(), 5.0, _stalled)
    assert next(items) == 1
    with pytest.raises(KeyError, match="lost"):
        next(items)


def test_a_source_that_stops_producing_ends_the_wait() -> None:
    release = threading.Event()

    def source() -> Iterator[int]:
        yield 1
        release.wait(30)  # stuck, as a dataset whose actors cannot be placed
        yield 2

    items = within_deadline(source(), 0.3, _stalled)
    assert next(items) == 1
    started = time.monotonic()
    with pytest.raises(Stalled, match=r"nothing for 0.3 s"):
        next(items)
    assert 0.25 < time.monotonic() - started < 5
    release.set()


def test_a_consumer_that_stops_early_stops_the_thread() -> None:
    produced = []
    done = threading.Event()

    def source() -> Iterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            done.set()

    items = within_deadline(source(), 5.0, _stalled)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert done.wait(5), "the thread kept reading the source"
    assert len(produced) < 1000
