"""The CPU split of the overhead suite times every piece of a request's work on the tiny
bundle, and the overhead section renders it beside the server's total."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness.payloads import tiny_requests
from bench.overhead import overhead_doc
from bench.overhead.cpu_split import measure_split
from bench.overhead.overhead_summary import summarize


def test_every_piece_is_timed_and_summed(tiny_bundle_dir: Path) -> None:
    split = measure_split(tiny_bundle_dir, tiny_requests(), calls=16)
    pieces = split["pieces_us"]
    assert set(pieces) == set(overhead_doc._PIECES)
    assert all(value > 0 for value in pieces.values()), pieces
    assert "models_batch_1_us" not in split["work_counts"]
    summed = sum(pieces[key] for key in split["work_counts"])
    assert abs(split["work_us"] - summed) < 0.5


def test_the_section_shows_the_serving_layer_as_the_rest() -> None:
    results: dict[str, Any] = overhead_doc.read_results(overhead_doc.RESULTS)
    summary = summarize(results["runs"], list(results["systems"]))
    results["cpu_split"] = {
        "pieces_us": {key: 10.0 for key in overhead_doc._PIECES},
        "work_us": 60.0,
        "work_counts": [key for key in overhead_doc._PIECES if key != "models_batch_1_us"],
    }
    lines = overhead_doc._split(results, summary)
    total_us = 1000 * summary["systems"]["fusionserve"]["cpu_ms_per_request"]["median"]
    assert f"| Server CPU per request (median above) | {total_us:.1f} |" in lines
    assert any(line.endswith(f"**{total_us - 60.0:.1f}** |") for line in lines)
