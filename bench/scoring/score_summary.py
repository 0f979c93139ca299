"""The scoring suite's summary: a ``fusionserve score`` run's figures read from its summary
line, the medians over rounds, the ratios score/limit and peak RSS 100x/10x against issue
29's targets, and the table the runner prints."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypedDict

from bench.harness.formatting import fixed
from bench.harness.statistics import median, ratio

# Issue 29: score's steady-state rows/s at least this share of the in-process limit...
RATIO_TARGET = 0.9
# ...and its peak RSS on 100x the rows within 10% of that on 10x.
RSS_TARGET = 1.10

# The line `fusionserve score` prints last (app.scoring.score_progress.ScoreSummary.line).
_SUMMARY = re.compile(
    r"scored (?P<rows>\d+) rows: (?P<ok>\d+) ok, (?P<error>\d+) error.*?; "
    r"(?P<rows_per_s>[\d.]+) rows/s, wall time (?P<seconds>[\d.]+) s"
)


class ScoreLine(TypedDict):
    """What a score run's summary line says: rows scored, ok and in error, its rows/s and
    seconds from the job's start (engine loaded) to its last commit."""

    rows: int
    ok: int
    error: int
    rows_per_s: float
    seconds: float


def parse_score_line(stdout: str) -> ScoreLine:
    """The last summary line of a ``fusionserve score`` run's stdout."""
    found = list(_SUMMARY.finditer(stdout))
    if not found:
        raise ValueError("no `scored N rows: ...` line in the score run's output")
    last = found[-1]
    return {
        "rows": int(last["rows"]),
        "ok": int(last["ok"]),
        "error": int(last["error"]),
        "rows_per_s": float(last["rows_per_s"]),
        "seconds": float(last["seconds"]),
    }


def _verdict(value: float, target: float, at_least: bool) -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {"value": value, "target": f"{'>=' if at_least else '<='} {target}", "met": met}


def summarize(
    score_runs: Sequence[dict[str, Any]], limit_runs: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Medians over rounds and the two targets' verdicts. ``score_runs``: one per score run,
    with ``scale`` (``10x`` or ``100x``), ``rows_per_s`` (steady: the job's own figure),
    ``rows_per_s_with_startup`` (rows over the process's wall time), ``startup_s``,
    ``peak_rss_kib`` and ``error``; ``limit_runs``: one per round with ``items_per_s`` and
    ``batch_size`` (the limit's best)."""
    big = [run for run in score_runs if run["scale"] == "100x"]
    small = [run for run in score_runs if run["scale"] == "10x"]
    if not big or not small or not limit_runs:
        raise ValueError("a summary needs 10x and 100x score runs and limit runs")
    steady = median(run["rows_per_s"] for run in big)
    limit = median(run["items_per_s"] for run in limit_runs)
    rss_small = median(run["peak_rss_kib"] for run in small)
    rss_big = median(run["peak_rss_kib"] for run in big)
    score_over_limit = ratio(steady, limit)
    rss_ratio = ratio(max(rss_big, rss_small), min(rss_big, rss_small))
    return {
        "score_rows_per_s": steady,
        "score_rows_per_s_with_startup": median(run["rows_per_s_with_startup"] for run in big),
        "score_startup_s": median(run["startup_s"] for run in big),
        "limit_items_per_s": limit,
        "limit_best_batch_sizes": [run["batch_size"] for run in limit_runs],
        "peak_rss_kib": {"10x": rss_small, "100x": rss_big},
        "rows_in_error": sum(run["error"] for run in score_runs),
        "targets": {
            "score_over_limit": _verdict(score_over_limit, RATIO_TARGET, at_least=True),
            "peak_rss_100x_over_10x": _verdict(rss_ratio, RSS_TARGET, at_least=False),
        },
    }


def table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table: the figures, then each target and its verdict."""
    targets = summary["targets"]
    rss = summary["peak_rss_kib"]
    lines = [
        f"score, steady (job start to last commit): {fixed(summary['score_rows_per_s'])} rows/s",
        f"score, with start-up (process wall time): "
        f"{fixed(summary['score_rows_per_s_with_startup'])} rows/s "
        f"(start-up {fixed(summary['score_startup_s'], 2)} s)",
        f"in-process limit (best batch sizes {summary['limit_best_batch_sizes']}): "
        f"{fixed(summary['limit_items_per_s'])} items/s",
        f"peak RSS: 10x rows {fixed(rss['10x'] / 1024)} MiB, 100x rows "
        f"{fixed(rss['100x'] / 1024)} MiB",
        "",
        "| measure | value | target | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for name, label in (
        ("score_over_limit", "score (steady) / in-process limit"),
        ("peak_rss_100x_over_10x", "peak RSS, larger / smaller of 100x and 10x"),
    ):
        verdict = targets[name]
        met = "met" if verdict["met"] else "MISSED"
        lines.append(f"| {label} | {verdict['value']:.3f} | {verdict['target']} | {met} |")
    if summary["rows_in_error"]:
        lines.append(f"warning: {summary['rows_in_error']} rows failed in the score runs")
    return "\n".join(lines)
