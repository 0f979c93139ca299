"""docs/scoring.md's measured figures are generated from the committed results of
``python -m bench.scoring.score_throughput``; a stale section fails here."""

from __future__ import annotations

from bench.harness.generated_docs import section_body
from bench.scoring import score_doc
from tests.support.repo_paths import ROOT


def test_the_section_is_what_the_committed_results_render() -> None:
    written = section_body(
        (ROOT / "docs" / "scoring.md").read_text(encoding="utf-8"), "score-throughput"
    )
    assert written == score_doc.committed_sections()[score_doc.SECTION].strip(), (
        "the score-throughput section is stale: run python -m bench.scoring.score_doc"
    )
