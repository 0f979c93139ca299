"""bench.scoring.engines_summary: medians per engine, ratios to the local engine, and the
sizing example from the stage rates, on hand-made runs; bench.scoring.stage_rates on the tiny
bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.scoring.engines_summary import ENGINES, sizing_example, summarize, table
from bench.scoring.stage_rates import stage_rates
from tests.support.score_tables import write_images, write_table
from tests.support.tiny_bundle import make_tiny_bundle

RATES = {
    "rows": 400,
    "rows_failed": 0,
    "batch_size": 8,
    "prepare_rows_per_s_per_core": 100.0,
    "model_rows_per_s_per_cpu": 50.0,
}


def _run(engine: str, rows_per_s: float, error: int = 0) -> dict[str, Any]:
    return {
        "engine": engine,
        "rows_per_s": rows_per_s,
        "rows_per_s_with_startup": rows_per_s - 10,
        "error": error,
    }


def test_medians_and_ratios_to_the_local_engine() -> None:
    runs = [
        _run("local", 60.0),
        _run("local", 64.0),
        _run("local", 62.0),
        _run("ray-1node", 30.0),
        _run("ray-1node", 31.0, error=2),
        _run("ray-2nodes", 46.5),
    ]
    summary = summarize(runs, RATES)
    assert summary["engines"]["local"]["rows_per_s"] == 62.0
    assert summary["engines"]["ray-1node"]["rows_per_s"] == 30.5
    assert summary["engines"]["ray-1node"]["over_local"] == 0.492
    assert summary["engines"]["ray-2nodes"]["over_local"] == 0.75
    assert summary["engines"]["ray-2nodes"]["over_local_with_startup"] == 0.702
    assert summary["prepare_cores_per_model_cpu"] == 0.5
    assert summary["rows_in_error"] == 2
    printed = table(summary)
    assert all(label in printed for label in ENGINES.values())
    assert "warning: 2 rows failed" in printed


def test_every_engine_needs_runs() -> None:
    with pytest.raises(ValueError, match="no ray-2nodes runs"):
        summarize([_run("local", 60.0), _run("ray-1node", 30.0)], RATES)


def test_the_sizing_example_divides_the_rate_needed_by_each_stage_s() -> None:
    # 10 M rows in 8 h: 347.2 rows/s; / 100 per core, / 50 per model CPU.
    assert sizing_example(RATES).startswith(
        "e.g. 10,000,000 rows in 8 h is 347 rows/s: 3.5 preparing cores and 6.9 model CPUs"
    )


def test_stage_rates_on_the_tiny_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    make_tiny_bundle(bundle)
    images = write_images(tmp_path, 3)
    rows = [{"id": f"r{i}", "image": images[i % 3], "text": "a red shirt"} for i in range(20)]
    rows[4]["image"] = "images/missing.png"
    table_path = write_table(tmp_path / "in.csv", rows)
    rates = stage_rates(bundle, table_path, 16)
    assert (rates["rows"], rates["rows_failed"]) == (16, 1)
    assert rates["prepare_rows_per_s_per_core"] > 0
    assert rates["model_rows_per_s_per_cpu"] > 0
