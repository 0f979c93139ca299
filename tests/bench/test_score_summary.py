"""bench.scoring.score_summary: the score run's summary line read back, and the medians,
ratios and verdicts against issue 29's targets, on hand-made runs."""

from __future__ import annotations

from typing import Any

import pytest

from app.scoring.score_progress import ScoreSummary
from bench.scoring.score_summary import parse_score_line, summarize, table


def _score(scale: str, rows_per_s: float, rss_kib: int, error: int = 0) -> dict[str, Any]:
    return {
        "scale": scale,
        "rows_per_s": rows_per_s,
        "rows_per_s_with_startup": rows_per_s / 2,
        "startup_s": 3.0,
        "peak_rss_kib": rss_kib,
        "error": error,
    }


def test_the_line_score_prints_is_read_back() -> None:
    line = ScoreSummary(ok=495, error=5, skipped=10, seconds=8.0).line()
    parsed = parse_score_line(f"progress...\n{line}\n")
    assert parsed == {"rows": 500, "ok": 495, "error": 5, "rows_per_s": 62.5, "seconds": 8.0}


def test_a_run_without_a_summary_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="scored N rows"):
        parse_score_line("Traceback (most recent call last): ...")


def test_medians_ratios_and_verdicts() -> None:
    score = [
        _score("100x", 50.0, 400_000),
        _score("10x", 40.0, 380_000),
        _score("100x", 56.0, 420_000),
        _score("10x", 41.0, 390_000),
        _score("100x", 60.0, 410_000),
        _score("10x", 42.0, 385_000),
    ]
    limit = [{"items_per_s": 60.0, "batch_size": 8}, {"items_per_s": 62.0, "batch_size": 16}]
    summary = summarize(score, limit)
    assert summary["score_rows_per_s"] == 56.0
    assert summary["limit_items_per_s"] == 61.0
    assert summary["limit_best_batch_sizes"] == [8, 16]
    assert summary["peak_rss_kib"] == {"10x": 385_000, "100x": 410_000}
    ratio = summary["targets"]["score_over_limit"]
    assert ratio == {"value": 0.918, "target": ">= 0.9", "met": True}
    rss = summary["targets"]["peak_rss_100x_over_10x"]
    assert rss == {"value": 1.065, "target": "<= 1.1", "met": True}
    assert "| met |" in table(summary)


def test_a_slow_score_and_a_growing_rss_miss_their_targets() -> None:
    score = [_score("100x", 50.0, 600_000, error=2), _score("10x", 45.0, 400_000)]
    summary = summarize(score, [{"items_per_s": 100.0, "batch_size": 8}])
    assert not summary["targets"]["score_over_limit"]["met"]
    assert summary["targets"]["peak_rss_100x_over_10x"]["value"] == 1.5
    assert not summary["targets"]["peak_rss_100x_over_10x"]["met"]
    text = table(summary)
    assert text.count("MISSED") == 2
    assert "2 rows failed" in text


def test_a_summary_needs_both_scales_and_the_limit() -> None:
    with pytest.raises(ValueError, match="10x and 100x"):
        summarize([_score("100x", 50.0, 1)], [{"items_per_s": 1.0, "batch_size": 1}])
