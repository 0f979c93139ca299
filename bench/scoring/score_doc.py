"""The measured sections of docs/scoring.md, from the committed results of
``python -m bench.scoring.score_throughput`` and ``python -m bench.scoring.score_engines``.

    python -m bench.scoring.score_doc [--check]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness.generated_docs import sections_main
from bench.harness.paths import REPO_ROOT, RESULTS_DIR
from bench.scoring import engines_summary
from bench.scoring.score_summary import table

RESULTS = RESULTS_DIR / "score-throughput.json"
ENGINES_RESULTS = RESULTS_DIR / "score-engines.json"
DOC = REPO_ROOT / "docs" / "scoring.md"
SECTION = "score-throughput"
ENGINES_SECTION = "score-engines"


def render(results: dict[str, Any]) -> str:
    """How the figures were made, then the summary and verdict table."""
    plan = results["plan"]
    return (
        f"Recorded command: `{results['command']}` on {results['machine']['nproc']} cores, "
        f"the default bundle, {plan['rows']} (100x) and {plan['rows'] // 10} (10x) rows of the "
        f"benchmark's photos and titles, {plan['rounds']} alternating rounds, medians:\n\n"
        + table(results["summary"])
    )


def render_engines(results: dict[str, Any]) -> str:
    """How the engines were compared, then their table and the stage rates."""
    plan = results["plan"]
    return (
        f"Recorded command: `{results['command']}` on {results['machine']['nproc']} cores, "
        f"the default bundle, {plan['rows']} rows of the benchmark's photos and titles per "
        f"run, {plan['rounds']} rotated rounds, medians:\n\n"
        + engines_summary.table(results["summary"])
    )


def committed_sections(results: Path = RESULTS, engines: Path = ENGINES_RESULTS) -> dict[str, str]:
    """Both sections, from the committed results."""
    return {
        SECTION: render(json.loads(results.read_text(encoding="utf-8"))),
        ENGINES_SECTION: render_engines(json.loads(engines.read_text(encoding="utf-8"))),
    }


if __name__ == "__main__":
    raise SystemExit(
        sections_main(
            "python -m bench.scoring.score_doc",
            (__doc__ or "").split("\n\n")[0],
            DOC,
            committed_sections,
        )
    )
