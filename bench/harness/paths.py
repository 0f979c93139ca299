"""Where the benchmarks live, and where they write their results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"  # committed results; quick runs go to results/quick/
DOCS_DIR = REPO_ROOT / "docs"


def output_dir(out: Path | None, quick: bool) -> Path:
    """A session's results folder: ``--out`` if given, else bench/results (bench/results/quick
    for a quick run, which git ignores)."""
    if out is not None:
        return out
    return RESULTS_DIR / "quick" if quick else RESULTS_DIR


def read_results(path: Path) -> dict[str, Any]:
    """A results file (JSON object) as written by a suite."""
    results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return results
