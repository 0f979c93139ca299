"""An iterator's items, each waited for at most a deadline: the iterator runs in a thread of
its own and hands items over a small queue, so that a source that stops producing (a Ray
dataset whose actors can never be placed) ends the wait with an error instead of a hang."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_HANDOFF_S = 0.5  # how often the thread checks, while the queue is full, that it is wanted


class _End:
    """The source is exhausted."""


class _Failed:
    """The source raised ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def within_deadline(
    source: Iterator[T], timeout_s: float, stalled: Callable[[float], Exception]
) -> Iterator[T]:
    """``source``'s items in order; raises ``stalled(timeout_s)`` when the next one does not
    come within ``timeout_s``, and what ``source`` raises. On a stall the thread is left
    blocked in ``source`` (a daemon: it cannot be interrupted there); once the consumer
    stops, a thread that gets an item stops too."""
    handoff: queue.Queue[T | _End | _Failed] = queue.Queue(maxsize=2)
    wanted = threading.Event()
    wanted.set()

    def pump() -> None:
        try:
            for item in source:
                if not _put(handoff, item, wanted):
                    return
            _put(handoff, _End(), wanted)
        except BaseException as error:  # handed to the consumer's thread
            _put(handoff, _Failed(error), wanted)

    threading.Thread(target=pump, name="stall-watch", daemon=True).start()
    try:
        while True:
            try:
                got = handoff.get(timeout=timeout_s)
            except queue.Empty:
                raise stalled(timeout_s) from None
            if isinstance(got, _End):
                return
            if isinstance(got, _Failed):
                raise got.error
            yield got
    finally:
        wanted.clear()


def _put(
    handoff: queue.Queue[T | _End | _Failed], item: T | _End | _Failed, wanted: threading.Event
) -> bool:
    """Hand ``item`` over unless the consumer stopped; whether it was handed over."""
    while wanted.is_set():
        try:
            handoff.put(item, timeout=_HANDOFF_S)
            return True
        except queue.Full:
            continue
    return False
