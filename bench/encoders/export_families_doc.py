"""The generated section of docs/bring-your-own-encoders.md, from the committed results of
``python -m bench.encoders.export_families`` (torch-free: the docs tests run without it).

    python -m bench.encoders.export_families_doc [--check]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness.generated_docs import sections_main
from bench.harness.paths import REPO_ROOT, RESULTS_DIR

RESULTS = RESULTS_DIR / "export-encoders.json"
DOC = REPO_ROOT / "docs" / "bring-your-own-encoders.md"
SECTION = "export-families"


def row(name: str, entry: dict[str, Any]) -> str:
    parity = entry["parity"]

    def cell(kind: str) -> str:
        found = parity.get(kind)
        if found is None or found["min_cosine"] is None:
            return "-"
        return f"{found['min_cosine']:.6f} ({found['worst_input']})"

    return (
        f"| {name} | {cell('exact')} | {cell('reduced')} | {cell('departure')} | "
        f"{entry['onnx_vs_torch_min_cosine']:.7f} | {entry['export_seconds']:.1f} | "
        f"{entry['graph_bytes'] / 1e6:.2f} |"
    )


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table: one row per encoder."""
    lines = [
        "| encoder | exact: min cosine (input) | reduced | departures | ONNX vs torch | "
        "export s | graph MB |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for group in ("image", "text"):
        for name, entry in results[group].items():
            lines.append(row(f"{group}: {name}", entry))
    for name, entry in results.get("real", {}).items():
        if isinstance(entry, dict):
            lines.append(row(name, entry))
    return "\n".join(lines)


def doc_section(results: dict[str, Any]) -> str:
    """The docs' generated section: how the figures were made, then the table."""
    return (
        f"Recorded command: `{results['command']}` on {results['machine']['cpus']} cores. "
        "Tiny checkpoints are randomly initialised (hidden sizes 16-32, 32-pixel inputs), "
        "which makes them far more sensitive to pixel differences than trained models; each "
        "image family is exported with a tiny sentence-transformers text encoder, each text "
        "kind with a tiny ViT. Cosines are the worst over each kind of input, with that input.\n\n"
        + table(results)
    )


def committed_sections(results: Path = RESULTS) -> dict[str, str]:
    """The generated section of the docs page, from the committed results."""
    return {SECTION: doc_section(json.loads(results.read_text(encoding="utf-8")))}


if __name__ == "__main__":
    raise SystemExit(
        sections_main(
            "python -m bench.encoders.export_families_doc",
            (__doc__ or "").split("\n\n")[0],
            DOC,
            committed_sections,
        )
    )
