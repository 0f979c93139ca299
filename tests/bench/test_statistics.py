"""bench.harness.statistics against independent computations (numpy, the standard library,
and percentiles interpolated by hand)."""

from __future__ import annotations

import math
import statistics as stdlib_statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness.statistics import (
    mean,
    median,
    median_or_none,
    percentiles,
    ratio,
    ratio_or_none,
)

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
SAMPLES = st.lists(FINITE, min_size=1, max_size=60)


def _percentile_by_hand(values: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@given(SAMPLES)
def test_median_matches_numpy_and_rounds_to_three_decimals(values: list[float]) -> None:
    expected = float(np.median(values))
    assert median(values) == pytest.approx(expected, abs=5e-4 + 1e-9 * abs(expected))
    assert median(values) == round(median(values), 3)
    assert median(values, digits=None) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_median_of_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([1.0, 2.0, 3.0, 10.0], digits=None) == 2.5
    assert median([0.1234567, 0.1234567]) == 0.123
    assert median(iter([3.0, 1.0, 2.0])) == 2.0  # any iterable, e.g. a generator


def test_median_or_none_is_none_only_without_values() -> None:
    assert median_or_none([]) is None
    assert median_or_none([7.25]) == 7.25
    with pytest.raises(stdlib_statistics.StatisticsError):
        median([])


@given(SAMPLES)
def test_mean_matches_numpy(values: list[float]) -> None:
    expected = float(np.mean(values))
    assert mean(values) == pytest.approx(expected, abs=5e-4 + 1e-9 * abs(expected))
    assert mean(values, digits=None) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_ratio_rounds_to_the_digits_asked_for() -> None:
    assert ratio(2.0, 3.0) == 0.667
    assert ratio(2.0, 3.0, 4) == 0.6667
    assert ratio(2.0, 3.0, None) == 2.0 / 3.0
    with pytest.raises(ZeroDivisionError):
        ratio(1.0, 0.0)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(1.0, 8.0, 0.125), (None, 8.0, None), (1.0, None, None), (1.0, 0.0, None), (0.0, 2.0, 0.0)],
)
def test_ratio_or_none(
    numerator: float | None, denominator: float | None, expected: float | None
) -> None:
    assert ratio_or_none(numerator, denominator) == expected


@given(SAMPLES)
def test_percentiles_match_interpolation_by_hand(values: list[float]) -> None:
    got = percentiles(values)
    assert set(got) == {"p50", "p90", "p99", "mean", "max"}
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        expected = _percentile_by_hand(values, q)
        assert got[key] == pytest.approx(expected, abs=5e-4 + 1e-9 * abs(expected))
    assert got["max"] == round(max(values), 3)
    assert got["mean"] == pytest.approx(stdlib_statistics.fmean(values), abs=5e-4 + 1e-6)


def test_percentiles_of_a_known_sample() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentiles(values) == {
        "p50": 50.5,
        "p90": 90.1,
        "p99": 99.01,
        "mean": 50.5,
        "max": 100.0,
    }


def test_percentiles_of_nothing_are_all_none() -> None:
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
