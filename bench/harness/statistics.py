"""The statistics the suites report: medians, means, ratios and latency percentiles.

Every suite rounds the same way (3 decimals unless a caller asks otherwise) so that results
files written by different suites read alike. ``import statistics`` below is the standard
library's module (imports are absolute), not this one.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

import numpy as np


def _rounded(value: float, digits: int | None) -> float:
    return value if digits is None else round(value, digits)


def median(values: Iterable[float], digits: int | None = 3) -> float:
    """The median of ``values`` (at least one), rounded to ``digits`` (None: not rounded)."""
    return _rounded(statistics.median(values), digits)


def median_or_none(values: Sequence[float], digits: int | None = 3) -> float | None:
    """The median of ``values``, or None when there are none (a phase that never ran)."""
    return median(values, digits) if values else None


def mean(values: Iterable[float], digits: int | None = 3) -> float:
    """The arithmetic mean of ``values`` (at least one), rounded to ``digits``."""
    return _rounded(statistics.fmean(values), digits)


def ratio(numerator: float, denominator: float, digits: int | None = 3) -> float:
    """``numerator / denominator`` rounded to ``digits``."""
    return _rounded(numerator / denominator, digits)


def ratio_or_none(
    numerator: float | None, denominator: float | None, digits: int | None = 3
) -> float | None:
    """The ratio, or None when the numerator is unknown or the denominator unknown or zero."""
    if numerator is None or not denominator:
        return None
    return ratio(numerator, denominator, digits)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 (numpy's linear interpolation), mean and max, rounded to 3 decimals;
    all None for no values."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    array = np.asarray(values)
    p50, p90, p99 = np.percentile(array, [50, 90, 99])
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(array.mean()), 3),
        "max": round(float(array.max()), 3),
    }
