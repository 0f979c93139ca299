"""docs/scaling.md's autoscale section is generated: exactly what bench.scaling.scaling_doc
renders from the committed results and the shipped HPA manifest. A stale section fails here;
``python -m bench.scaling.scaling_doc`` rewrites it."""

from __future__ import annotations

from bench.harness.generated_docs import section_body
from bench.scaling import scaling_doc
from tests.support.repo_paths import ROOT


def test_the_renderer_reads_the_shipped_hpa_and_writes_the_page() -> None:
    assert scaling_doc.DOC == ROOT / "docs" / "scaling.md"
    assert scaling_doc.HPA == ROOT / "deploy" / "base" / "hpa.yaml"


def test_the_section_is_what_the_committed_results_render() -> None:
    written = section_body(scaling_doc.DOC.read_text(encoding="utf-8"), scaling_doc.SECTION)
    assert written == scaling_doc.committed_sections()[scaling_doc.SECTION].strip(), (
        "docs/scaling.md is stale: run python -m bench.scaling.scaling_doc"
    )
