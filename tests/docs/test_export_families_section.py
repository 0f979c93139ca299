"""docs/bring-your-own-encoders.md's measured figures are generated from the committed results
of ``python -m bench.encoders.export_families``; a stale section fails here."""

from __future__ import annotations

from bench.encoders import export_families_doc as export_families
from bench.harness.generated_docs import section_body
from tests.support.repo_paths import ROOT

DOC = ROOT / "docs" / "bring-your-own-encoders.md"


def test_the_section_is_what_the_committed_results_render() -> None:
    written = section_body(DOC.read_text(encoding="utf-8"), export_families.SECTION)
    (rendered,) = export_families.committed_sections().values()
    assert written == rendered.strip(), (
        "the export-families section is stale: run python -m bench.encoders.export_families"
    )


def test_every_family_the_docs_list_was_measured() -> None:
    results = export_families.committed_sections()[export_families.SECTION]
    for family in ("vit", "deit", "beit", "convnext", "swin", "dinov2", "resnet", "clip",
                   "siglip", "CLIP text tower", "SigLIP text tower", "EfficientNet-Lite0",
                   "all-MiniLM-L6-v2", "weightedmean", "lasttoken"):  # fmt: skip
        assert family in results
