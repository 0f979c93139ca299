"""The default bundle's encoders as a base bundle, through ``export-encoders``' Python API.

EfficientNet-Lite0 (neither a transformers nor a timm model: its preprocessing given
explicitly, ``efficientnet_export.image_source``) and all-MiniLM-L6-v2 (the generic transformers
text path, ``minilm_export.text_source``) exported, checked against torch and against their own
pipelines on the parity corpus, with golden inputs: the same path as any user's encoders.

    python -m models.recipes.fashion_mnist.default_encoders --out DIR [--force]

Prints the summary; DIR/parity.json holds the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models.encoders.export_encoders import ExportOptions, export_encoders, summary_lines
from models.recipes.fashion_mnist import efficientnet_export, minilm_export


def export_default_encoders(
    out: Path, *, force: bool = False, large: bool = True
) -> dict[str, Any]:
    """Write the default encoders as a base bundle to ``out``; return the parity report."""
    return export_encoders(
        efficientnet_export.image_source(),
        minilm_export.text_source(),
        out,
        ExportOptions(
            name="fashion-mnist-encoders",
            description="EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2 (mean, normalised), "
            "the default bundle's encoders",
            force=force,
            large_inputs=large,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    report = export_default_encoders(args.out, force=args.force)
    print("\n".join(summary_lines(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
