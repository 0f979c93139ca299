"""docs/benchmarks.md's request-path section is generated: exactly what
bench.overhead.request_path_doc renders from the committed A/B runs and parser timings.

A stale section fails here; ``python -m bench.overhead.request_path_doc`` rewrites it.
"""

from __future__ import annotations

import pytest

from bench.harness.generated_docs import section_body
from bench.harness.paths import read_results
from bench.overhead import request_path_doc
from tests.support.repo_paths import ROOT


def test_the_renderer_writes_and_reads_the_files_this_test_knows() -> None:
    assert request_path_doc.DOC == ROOT / "docs" / "benchmarks.md"
    results = ROOT / "bench" / "results"
    assert results / "request-overhead.json" == request_path_doc.TINY
    assert results / "request-overhead-default.json" == request_path_doc.DEFAULT
    assert results / "multipart-parsers.json" == request_path_doc.PARSERS


def test_the_section_is_what_the_committed_results_render() -> None:
    written = section_body(request_path_doc.DOC.read_text(encoding="utf-8"), "request-path")
    expected = request_path_doc.committed_sections()["request-path"].strip()
    assert written == expected, (
        "docs/benchmarks.md section 'request-path' is stale: "
        "run python -m bench.overhead.request_path_doc"
    )


def test_each_runs_split_covers_its_whole_cpu_per_request() -> None:
    tiny = read_results(request_path_doc.TINY)
    for label, runs in tiny["runs"].items():
        for run in runs:
            split = run["split_us"]
            parts = sum(split[part] for part in request_path_doc.PARTS)
            assert abs(parts - 1000 * run["cpu_ms_per_request"]) < 1.0, label
            assert abs(parts - (split["work"] + split["serving_layer"])) < 1.0, label


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [
        ({}, "no figure is worse by more than 5%"),
        ({"throughput_rps": 0.94}, "worse by more than 5%: saturation (0.940x)."),
        ({"single_p99_ms": 1.06}, "worse by more than 5%: single-client p99 (1.060x)."),
        ({"throughput_rps": 1.2, "cpu_ms_per_request": 0.5}, "no figure is worse"),
    ],
)
def test_the_default_bundles_verdict_rests_on_its_ratios(
    ratios: dict[str, float], verdict: str
) -> None:
    keys = ("throughput_rps", "cpu_ms_per_request", "single_p50_ms", "single_p99_ms")
    default = {"after_over_before": {key: 1.0 for key in keys} | ratios}
    assert verdict in request_path_doc.default_verdict(default)
