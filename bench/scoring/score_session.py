"""What both scoring suites do with a finished session: the results file (command, plan,
machine, runs, summary) in bench/results (``--quick``: bench/results/quick), the printed
table, and docs/scoring.md's measured sections re-rendered when the committed results
changed."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness.generated_docs import write_sections
from bench.harness.paths import RESULTS_DIR, output_dir
from bench.harness.session import logger, machine_info
from bench.scoring import score_doc

log = logger("score-session")


def save_session(
    name: str,
    command: str,
    plan: Any,
    runs: dict[str, Any],
    summary: dict[str, Any],
    printed: str,
    out: Path | None,
    quick: bool,
) -> Path:
    """Write results file ``name`` for a session of ``plan`` (a dataclass), print
    ``printed``; the file's path."""
    results = {
        "command": command,
        "plan": asdict(plan),
        "machine": machine_info(),
        "runs": runs,
        "summary": summary,
    }
    folder = output_dir(out, quick)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(printed)
    log(f"wrote {path}")
    if folder.resolve() == RESULTS_DIR.resolve():
        changed = write_sections(score_doc.DOC, score_doc.committed_sections())
        log(f"{score_doc.DOC.name}: rewrote {changed or 'nothing'}")
    return path
