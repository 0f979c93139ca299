"""DecodePace: seconds per reserved byte, per image format, with a safety margin."""

from __future__ import annotations

import pytest

from app.preprocess.decode_pace import SAFETY, TIMED_BYTES, DecodePace


def test_nothing_learned_allows_no_time() -> None:
    assert DecodePace().time_needed_s("PNG", 100 * TIMED_BYTES) == 0.0


def test_pace_is_learned_per_format() -> None:
    pace = DecodePace()
    pace.learned("PNG", TIMED_BYTES, 2.0)
    pace.learned("JPEG", 4 * TIMED_BYTES, 1.0)
    assert pace.time_needed_s("PNG", TIMED_BYTES) == pytest.approx(SAFETY * 2.0)
    assert pace.time_needed_s("PNG", TIMED_BYTES // 2) == pytest.approx(SAFETY * 1.0)
    assert pace.time_needed_s("JPEG", TIMED_BYTES) == pytest.approx(SAFETY * 0.25)
    pace.learned("PNG", 2 * TIMED_BYTES, 2.0)  # 1 s per TIMED_BYTES: averaged in
    assert pace.time_needed_s("PNG", TIMED_BYTES) == pytest.approx(SAFETY * 1.5)


def test_an_unseen_format_gets_the_slowest_pace() -> None:
    pace = DecodePace()
    pace.learned("PNG", TIMED_BYTES, 2.0)
    pace.learned("JPEG", TIMED_BYTES, 0.5)
    assert pace.time_needed_s("GIF", TIMED_BYTES) == pytest.approx(SAFETY * 2.0)


def test_small_decodes_teach_nothing() -> None:
    pace = DecodePace()
    pace.learned("PNG", TIMED_BYTES, 1.0)
    pace.learned("PNG", TIMED_BYTES - 1, 50.0)  # fixed costs, not a pace
    assert pace.time_needed_s("PNG", TIMED_BYTES) == pytest.approx(SAFETY * 1.0)
