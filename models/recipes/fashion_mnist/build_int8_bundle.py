"""Build the int8 default bundle with the project's own tools: quantize-bundle, then evaluate.

Usage:
``python -m models.recipes.fashion_mnist.build_int8_bundle [--work models/.cache/default-head]
[--seed 0] [--samples 256]``

Needs ``models/default`` (``fusionserve build-default-bundle``) and Fashion-MNIST. Steps, each
the command a user runs:

1. ``python -m models.recipes.fashion_mnist.dataset_writer``: the dataset of
   ``models.recipes.fashion_mnist.default_head`` (the same
   seed, so the same rows: PNGs already there are not rewritten).
2. ``python -m models.quantization.quantize_bundle`` (``fusionserve quantize-bundle``) of
   ``models/default``,
   calibrated on a seeded sample of the **train** split (Fashion-MNIST training images and
   their generated titles), checked on validation rows; into ``WORK/int8/bundle``.
3. ``python -m models.evaluation.evaluate`` (``fusionserve evaluate``) of it on the held-out
   **test** split, exactly as ``models/default`` was evaluated.
4. Check the target (fused test accuracy at most ``MAX_ACCURACY_DROP`` below the fp32
   bundle's, from ``models/default/evaluation.json``); only then put the bundle in
   ``models/default-int8`` and write its committed reports (``evaluation.json``,
   ``quantization.json``, ``model_card.md``) and the accuracy section of ``docs/int8.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from app.bundle.manifest import MANIFEST_FILENAME
from models.quantization.quantize_bundle import MODEL_CARD_FILE, REPORT_FILE
from models.recipes.fashion_mnist.variant_build import (
    EVALUATION_FILE,
    REPO_ROOT,
    SOURCE_DIR,
    WORK_DIR,
    accuracy_drop,
    accuracy_table,
    install,
    log,
    portable,
    relative,
    run_module,
    write_dataset,
)
from models.reporting.doc_sections import replace_section
from models.reporting.quantize_card import render_card

TARGET_DIR = REPO_ROOT / "models" / "default-int8"
DOC = REPO_ROOT / "docs" / "int8.md"
MAX_ACCURACY_DROP = 0.01  # fused test accuracy, int8 against fp32


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def comparison(fp32: dict[str, Any], int8: dict[str, Any], quantization: dict[str, Any]) -> str:
    """Markdown: the two bundles side by side on the test split, sizes, cosines, verdict."""
    lines = [
        f"Test split of the Fashion-MNIST dataset ({int8['dataset']['examples']} rows, never "
        "used for calibration), `fusionserve evaluate` on both bundles; the fusion head is the "
        "same file.",
        "",
        *accuracy_table(fp32, int8, "int8"),
    ]
    image, text = quantization["image_encoder"], quantization["text_encoder"]
    for title, entry in (("Image encoder file", image), ("Text encoder file", text)):
        before, after = entry["source"]["bytes"], entry["quantized"]["bytes"]
        lines.append(f"| {title} | {_mb(before)} | {_mb(after)} | {after / before:.2f}x |")
    check = quantization["check"]
    lines += [
        "",
        f"Cosine of the int8 embeddings to the fp32 ones on {check['rows']} validation rows "
        "(through the service's pipeline; mean / 1st percentile / min): image "
        f"{check['image_cosine']['mean']:.4f} / {check['image_cosine']['p1']:.4f} / "
        f"{check['image_cosine']['min']:.4f}, text {check['text_cosine']['mean']:.4f} / "
        f"{check['text_cosine']['p1']:.4f} / {check['text_cosine']['min']:.4f}; fused top-1 "
        f"agreement {check['fused_top1_agreement']:.4f}.",
        "",
        f"Target: fused test accuracy at most {100 * MAX_ACCURACY_DROP:.0f} point below fp32. "
        f"Measured: {-100 * accuracy_drop(fp32, int8):+.2f} points: **"
        f"{'PASS' if accuracy_drop(fp32, int8) <= MAX_ACCURACY_DROP else 'MISS'}**.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="dataset, bundle, reports")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=256, help="calibration rows")
    parser.add_argument("--data-dir", type=Path, help="Fashion-MNIST idx files")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not (SOURCE_DIR / MANIFEST_FILENAME).is_file():
        raise SystemExit(f"{SOURCE_DIR} has no manifest: run fusionserve build-default-bundle")
    work = Path(os.path.abspath(args.work))
    built, evaluated = work / "int8" / "bundle", work / "int8" / "evaluation"
    dataset = write_dataset(work, args.seed, args.data_dir)
    run_module(
        "models.quantization.quantize_bundle", relative(SOURCE_DIR), relative(built),
        "--calibration-data", dataset,
        "--split", "train",
        "--samples", str(args.samples),
        "--seed", str(args.seed),
        "--force",
        "--no-progress",
    )  # fmt: skip
    run_module(
        "models.evaluation.evaluate",
        "--bundle", relative(built),
        "--dataset", dataset,
        "--split", "test",
        "--out", relative(evaluated),
    )  # fmt: skip
    fp32 = json.loads((SOURCE_DIR / EVALUATION_FILE).read_text())
    int8 = portable(json.loads((evaluated / "report.json").read_text()), TARGET_DIR)
    quantization = json.loads((built / REPORT_FILE).read_text())
    quantization["source"]["path"] = relative(SOURCE_DIR)
    drop = accuracy_drop(fp32, int8)
    if drop > MAX_ACCURACY_DROP:
        raise SystemExit(
            f"fused test accuracy fell {100 * drop:.2f} points (limit "
            f"{100 * MAX_ACCURACY_DROP:.0f}); {TARGET_DIR} left unchanged"
        )
    table = comparison(fp32, int8, quantization)
    (built / EVALUATION_FILE).write_text(json.dumps(int8, indent=2) + "\n")
    (built / REPORT_FILE).write_text(json.dumps(quantization, indent=2) + "\n")
    (built / MODEL_CARD_FILE).write_text(
        render_card(quantization, table.splitlines()), encoding="utf-8"
    )
    install(built, TARGET_DIR)
    replace_section(DOC, "accuracy", table)
    log(
        f"int8 bundle in {TARGET_DIR} ({time.perf_counter() - started:.0f} s): fused test "
        f"accuracy {int8['metrics']['accuracy']:.4f} (fp32 {fp32['metrics']['accuracy']:.4f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
