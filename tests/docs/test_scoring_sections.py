"""docs/scoring.md's measured figures are generated from the committed results of
``python -m bench.scoring.score_throughput`` and ``python -m bench.scoring.score_engines``; a
stale section fails here."""

from __future__ import annotations

import pytest

from bench.harness.generated_docs import section_body
from bench.scoring import score_doc
from tests.support.repo_paths import ROOT


@pytest.mark.parametrize("section", [score_doc.SECTION, score_doc.ENGINES_SECTION])
def test_the_section_is_what_the_committed_results_render(section: str) -> None:
    written = section_body((ROOT / "docs" / "scoring.md").read_text(encoding="utf-8"), section)
    assert written == score_doc.committed_sections()[section].strip(), (
        f"the {section} section is stale: run python -m bench.scoring.score_doc"
    )
