"""docs/benchmarks.md is generated, and the hand-written discussion it includes quotes only
figures that the generated part of the page shows.

The page is what bench.peers.benchmarks_doc renders from the committed
bench/results/results.json around bench/peers/analysis.md (verbatim). A re-run, or an edit of
the renderer or of the discussion, leaves the page stale until
``python -m bench.peers.benchmarks_doc`` rewrites it (no benchmark needed). A figure typed into
the discussion that the results do not show on the page (a per-repeat value rounded by hand, a
figure from an earlier session or another machine) fails here: show it in the generated part
(the renderer's *Per repeat* section holds the per-repeat spreads) and refer to it, or drop it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bench.peers import benchmarks_doc
from tests.support.repo_paths import ROOT

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "results.json"
ANALYSIS = ROOT / "bench" / "peers" / "analysis.md"

# What the discussion must not type unless the generated part shows it: decimals, numbers of
# four digits or more, and numbers in the units a measurement comes in (a leading "+" or "-"
# is dropped; version strings such as 0.2.19, commit hashes and settings such as
# max_ongoing_requests=5 are not figures).
DECIMAL = r"(?<![\w.])\d+\.\d+(?!\.?\d)"
LONG = r"(?<![\w.])\d{4,}(?!\.?\d)"
MEASURE = (
    r"(?<![\w.])\d+(?:\.\d+)?"
    r"(?=(?: ?(?:ms|MB|MiB|GB|KB|KiB|req/s|items/s)| s|%|x)(?![\w/]))"
)
FIGURE = re.compile("|".join((DECIMAL, LONG, MEASURE)))
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")

# Figures the discussion may quote although the generated part does not show them: only
# figures that are not measurements (a version, a setting, a target). None is needed today;
# add one here with its reason rather than widening the patterns.
NOT_MEASURED: frozenset[str] = frozenset()


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RESULTS.read_text(encoding="utf-8"))
    return loaded


def figures(text: str) -> set[str]:
    return set(FIGURE.findall(text))


def unbacked(prose: str, generated: str) -> list[str]:
    """The figures of ``prose`` that ``generated`` does not show, allowed ones aside."""
    shown = set(NUMBER.findall(generated))
    return sorted(figures(prose) - shown - NOT_MEASURED)


def test_the_doc_renders_the_files_the_test_reads() -> None:
    assert benchmarks_doc.DOC == DOC
    assert benchmarks_doc.ANALYSIS == ANALYSIS


def test_the_page_is_what_the_committed_results_render(results: dict[str, Any]) -> None:
    assert DOC.read_text(encoding="utf-8") == benchmarks_doc.page(results), (
        "docs/benchmarks.md is stale: run python -m bench.peers.benchmarks_doc"
    )


def test_every_figure_of_the_discussion_is_in_the_generated_part(
    results: dict[str, Any],
) -> None:
    analysis = ANALYSIS.read_text(encoding="utf-8")
    generated = benchmarks_doc.page(results, analysis="")
    quoted = figures(analysis)
    assert {"0.988", "1.345", "578.804", "1686", "96"} <= quoted  # the patterns find them
    assert unbacked(analysis, generated) == []
    assert sorted(NOT_MEASURED & set(NUMBER.findall(generated))) == []  # allowed, not shown


def test_the_patterns_tell_figures_from_names() -> None:
    text = (
        "55.5 req/s, +1.04x, 96% busy, 52000 refused, 30 s, 12 ms, 1686 MiB, 2x load, "
        "ended at 0.45. LitServe 0.2.19, commit a7d3370, max_ongoing_requests=5, batch 16, "
        "exactly 160 503s, 8 clients, issue 7's bundle"
    )
    assert figures(text) == {"55.5", "1.04", "96", "52000", "30", "12", "1686", "2", "0.45"}


def test_a_figure_the_results_do_not_show_fails(results: dict[str, Any]) -> None:
    generated = benchmarks_doc.page(results, analysis="")
    # From an earlier session (no committed results file) and a per-repeat value rounded by
    # hand: what the discussion quoted before its figures moved into the generated part.
    typed = "the previous session: 924 ms and 3.79x; repeats gave 67.2, 59.9 and 61.54 items/s"
    assert unbacked(typed, generated) == ["3.79", "61.54", "924"]
