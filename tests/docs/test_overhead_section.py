"""docs/benchmarks.md's overhead-bound section is generated: exactly what
bench.overhead.overhead_doc renders from the committed bench/results/overhead.json, whose
stored summary is what its runs summarise to, and the plot it links is there.

A stale section fails here; ``python -m bench.overhead.overhead_doc`` rewrites it (and the
plot) without re-running the benchmark.
"""

from __future__ import annotations

from bench.harness.generated_docs import section_body
from bench.harness.paths import read_results
from bench.overhead import overhead_doc
from bench.overhead.overhead_summary import summarize
from tests.support.repo_paths import ROOT

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "overhead.json"


def test_the_renderer_writes_the_files_the_test_reads() -> None:
    assert overhead_doc.DOC == DOC
    assert overhead_doc.RESULTS == RESULTS


def test_the_section_is_what_the_committed_results_render() -> None:
    written = section_body(DOC.read_text(encoding="utf-8"), overhead_doc.SECTION)
    assert written == overhead_doc.committed_sections()[overhead_doc.SECTION].strip(), (
        "docs/benchmarks.md section 'overhead' is stale: run python -m bench.overhead.overhead_doc"
    )


def test_the_stored_summary_is_what_the_runs_summarise_to() -> None:
    results = read_results(RESULTS)
    assert results["summary"] == summarize(results["runs"], list(results["systems"]))


def test_the_linked_plot_exists() -> None:
    section = section_body(DOC.read_text(encoding="utf-8"), overhead_doc.SECTION)
    assert "](img/overhead.png)" in section
    assert (ROOT / "docs" / "img" / "overhead.png").stat().st_size > 0
