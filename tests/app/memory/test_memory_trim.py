"""MemoryTrimmer: trims after a large release, and once a burst is over; never on the
caller's thread, never two at once."""

from __future__ import annotations

import platform
import re
import threading
from pathlib import Path

import pytest

from app.memory.memory_budget import MemoryBudget
from app.memory.memory_trim import MemoryTrimmer, release_free_memory

MiB = 2**20


class Trims:
    """A trim function that counts its calls and can be held while it runs."""

    def __init__(self) -> None:
        self.done = threading.Semaphore(0)
        self.open = threading.Event()
        self.open.set()
        self.threads: list[str] = []

    def __call__(self) -> None:
        self.threads.append(threading.current_thread().name)
        assert self.open.wait(5)
        self.done.release()

    def count(self, timeout: float = 0.3) -> int:
        seen = 0
        while self.done.acquire(timeout=timeout):
            seen += 1
        return seen


def test_a_large_release_trims_at_once_in_a_thread_of_its_own() -> None:
    trims = Trims()
    trimmer = MemoryTrimmer(trims, threshold=32 * MiB)
    budget, other = MemoryBudget(100 * MiB, trimmer), MemoryBudget(100 * MiB, trimmer)
    assert other.try_reserve(1)  # another budget busy: a large release trims anyway
    assert budget.try_reserve(40 * MiB)
    budget.release(40 * MiB)
    assert trims.count() == 1
    assert trims.threads == ["fusionserve-trim"]


def test_small_releases_trim_once_the_burst_is_over() -> None:
    trims = Trims()
    trimmer = MemoryTrimmer(trims, threshold=32 * MiB, resident=lambda: 500 * MiB)
    decodes, bodies = MemoryBudget(100 * MiB, trimmer), MemoryBudget(100 * MiB, trimmer)
    assert bodies.try_reserve(MiB)  # a request still holds its body
    for _ in range(40):
        assert decodes.try_reserve(MiB)
        decodes.release(MiB)
    assert trims.count() == 0  # 40 MiB released, but not idle yet
    bodies.release(MiB)  # the last request is answered: idle
    assert trims.count() == 1
    assert decodes.try_reserve(MiB)
    decodes.release(MiB)
    assert trims.count() == 0  # 1 MiB since the last trim: not worth one


def test_bodies_read_and_dropped_unreserved_count_toward_a_trim() -> None:
    # A burst of refused requests: their bodies are read and discarded, never reserved, but
    # the allocator held them all the same.
    trims = Trims()
    trimmer = MemoryTrimmer(trims, threshold=32 * MiB, resident=lambda: 500 * MiB)
    bodies = MemoryBudget(100 * MiB, trimmer)
    for _ in range(3):
        bodies.passed_through(10 * MiB)
    assert trims.count() == 0  # 30 MiB: under the threshold
    bodies.passed_through(10 * MiB)
    assert trims.count() == 1
    bodies.passed_through(0)  # nothing read: nothing to count
    assert trims.count() == 0


def test_after_a_burst_only_grown_memory_is_trimmed() -> None:
    trims = Trims()
    resident = [400 * MiB]
    trimmer = MemoryTrimmer(trims, threshold=32 * MiB, slack=64 * MiB, resident=lambda: resident[0])
    budget = MemoryBudget(100 * MiB, trimmer)

    def burst() -> None:
        for _ in range(40):
            assert budget.try_reserve(MiB)
            budget.release(MiB)

    burst()
    assert trims.count() == 1  # the first: what normal traffic holds is learned after it
    resident[0] = 450 * MiB
    burst()
    assert trims.count() == 0  # 50 MiB over the floor: normal traffic, left alone
    resident[0] = 480 * MiB
    burst()
    assert trims.count() == 1
    assert budget.try_reserve(40 * MiB)
    budget.release(40 * MiB)
    assert trims.count() == 1  # a large release trims whatever the floor


def test_without_proc_bursts_are_trimmed() -> None:
    trims = Trims()
    budget = MemoryBudget(
        100 * MiB, MemoryTrimmer(trims, threshold=32 * MiB, resident=lambda: None)
    )
    for _ in range(2):
        for _ in range(33):
            assert budget.try_reserve(MiB)
            budget.release(MiB)
        assert trims.count() == 1


def test_a_release_during_a_trim_trims_again_after_it() -> None:
    trims = Trims()
    trimmer = MemoryTrimmer(trims, threshold=32 * MiB)
    budget = MemoryBudget(100 * MiB, trimmer)
    trims.open.clear()  # the first trim is held while it runs
    for _ in range(3):
        assert budget.try_reserve(40 * MiB)
        budget.release(40 * MiB)
    trims.open.set()
    assert trims.count() == 2  # the running one, then one more for what it may have missed
    assert trimmer.trims == 2


def _rss() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1)) * 1024


def test_malloc_trim_hands_freed_memory_back() -> None:
    if platform.libc_ver()[0] != "glibc" or not Path("/proc/self/status").exists():
        pytest.skip("malloc_trim and /proc are glibc's and Linux's")
    kept: list[bytearray] = []

    def churn() -> None:  # 128 MB in a thread's arena, every other block freed: holes
        blocks = [bytearray(64 * 1024) for _ in range(2000)]
        kept.extend(blocks[::2])

    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    before = _rss()
    release_free_memory()
    assert before - _rss() > 40 * MiB  # most of the 64 MB of holes
    assert len(kept) == 1000
