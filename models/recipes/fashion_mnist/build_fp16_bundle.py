"""Build the fp16 default bundle with the project's own tools: fp16-bundle, then evaluate.

Usage:
``python -m models.recipes.fashion_mnist.build_fp16_bundle [--device auto|cuda|cpu]
[--work models/.cache/default-head] [--seed 0] [--check-rows 256] [--data-dir DIR]``

Needs ``models/default`` (``fusionserve build-default-bundle``) and Fashion-MNIST. Steps, each
the command a user runs:

1. ``python -m models.recipes.fashion_mnist.dataset_writer``: the dataset of
   ``models.recipes.fashion_mnist.default_head`` (the same seed, so the same rows).
2. ``python -m models.precision.fp16_bundle`` (``fusionserve fp16-bundle``) of
   ``models/default`` into ``WORK/fp16/bundle``, started on ``--device`` and compared with the
   fp32 bundle on validation rows.
3. ``python -m models.evaluation.evaluate`` (``fusionserve evaluate``) of it on the held-out
   **test** split, exactly as ``models/default`` was evaluated, on ``--device``.
4. Check the target (fused test accuracy within ``MAX_ACCURACY_GAP`` of the fp32 bundle's, from
   ``models/default/evaluation.json``); only then put the bundle in ``models/default-fp16`` and
   write its committed reports (``evaluation.json``, ``conversion.json``, ``model_card.md``).

The fp16 models are for GPUs. ONNX Runtime's x86 CPU provider runs them too, but most of their
arithmetic in float32 between inserted casts (``conversion.json``'s ``kernels`` counts it): on
``--device cpu`` the evaluation checks the float16 weights and interface, not float16
arithmetic. ``--device cuda`` fails at once, saying so, where ONNX Runtime has no CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort

from app.bundle.manifest import MANIFEST_FILENAME
from app.core.runtime import CUDA
from models.precision.fp16_bundle import MODEL_CARD_FILE, REPORT_FILE
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
from models.reporting.fp16_card import render_card

TARGET_DIR = REPO_ROOT / "models" / "default-fp16"
MAX_ACCURACY_GAP = 0.002  # fused test accuracy, fp16 against fp32, either way (0.2 point)


def resolve_device(requested: str) -> str:
    """``cuda`` or ``cpu``: ``auto`` takes CUDA when ONNX Runtime has it; ``cuda`` without it
    stops the build with the reason."""
    has_cuda = CUDA in ort.get_available_providers()
    if requested == "cuda" and not has_cuda:
        raise SystemExit(
            f"--device cuda: ONNX Runtime here has no {CUDA} (providers: "
            f"{', '.join(ort.get_available_providers())}); the fp16 bundle's float16 arithmetic "
            "needs a CUDA device: run this on a GPU machine with onnxruntime-gpu, or pass "
            "--device cpu to check only its float16 weights (most of its arithmetic then runs "
            "in float32)"
        )
    if requested == "auto":
        return "cuda" if has_cuda else "cpu"
    return requested


def _providers(evaluation: dict[str, Any]) -> str:
    used = {p[0] for p in evaluation["bundle"].get("providers", {}).values()}
    return ", ".join(sorted(used)) or "CPUExecutionProvider"


def comparison(fp32: dict[str, Any], fp16: dict[str, Any], conversion: dict[str, Any]) -> str:
    """Markdown: the two bundles side by side on the test split, where each ran, the verdict."""
    gap = accuracy_drop(fp32, fp16)
    check = conversion["check"]
    where = _providers(fp16)
    caveat = (
        ""
        if CUDA in where
        else " The CPU provider ran most of the fp16 models' arithmetic in float32 (the node "
        "counts above): this checks their float16 weights, not float16 arithmetic, which "
        "`--device cuda` checks."
    )
    return "\n".join(
        [
            f"Test split of the Fashion-MNIST dataset ({fp16['dataset']['examples']} rows), "
            f"`fusionserve evaluate` on both bundles: fp32 on {_providers(fp32)}, fp16 on "
            f"{where}.{caveat}",
            "",
            *accuracy_table(fp32, fp16, "fp16"),
            "",
            f"Against the fp32 bundle on the same provider, {check['rows']} validation rows: "
            f"embedding cosine (min) image {check['image_cosine']['min']:.6f}, text "
            f"{check['text_cosine']['min']:.6f}; fused top-1 agreement "
            f"{check['fused_top1_agreement']:.4f}; largest class probability difference "
            f"{check['fused_max_abs_probability_diff']:.5f}.",
            "",
            f"Target: fused test accuracy within {100 * MAX_ACCURACY_GAP:.1f} point of fp32. "
            f"Measured: {-100 * gap:+.2f} points: "
            f"**{'PASS' if abs(gap) <= MAX_ACCURACY_GAP else 'MISS'}**.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--work", type=Path, default=WORK_DIR, help="dataset, bundle, reports")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-rows", type=int, default=256, help="validation rows compared")
    parser.add_argument("--data-dir", type=Path, help="Fashion-MNIST idx files")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if not (SOURCE_DIR / MANIFEST_FILENAME).is_file():
        raise SystemExit(f"{SOURCE_DIR} has no manifest: run fusionserve build-default-bundle")
    device = resolve_device(args.device)
    log(f"device: {device}")
    work = Path(os.path.abspath(args.work))
    built, evaluated = work / "fp16" / "bundle", work / "fp16" / f"evaluation-{device}"
    dataset = write_dataset(work, args.seed, args.data_dir)
    run_module(
        "models.precision.fp16_bundle", relative(SOURCE_DIR),
        "--out", relative(built),
        "--check-data", dataset,
        "--check-rows", str(args.check_rows),
        "--seed", str(args.seed),
        "--device", device,
        "--force",
        "--no-progress",
    )  # fmt: skip
    run_module(
        "models.evaluation.evaluate",
        "--bundle", relative(built),
        "--dataset", dataset,
        "--split", "test",
        "--out", relative(evaluated),
        "--device", device,
        # Features are cached by file hash: keep CPU- and GPU-computed fp16 rows apart.
        "--cache-dir", relative(work / "fp16" / f"features-{device}"),
    )  # fmt: skip
    fp32 = json.loads((SOURCE_DIR / EVALUATION_FILE).read_text())
    fp16 = portable(json.loads((evaluated / "report.json").read_text()), TARGET_DIR)
    conversion = json.loads((built / REPORT_FILE).read_text())
    conversion["source"]["path"] = relative(SOURCE_DIR)
    conversion["check"]["dataset"] = fp16["dataset"]["path"]
    gap = accuracy_drop(fp32, fp16)
    if abs(gap) > MAX_ACCURACY_GAP:
        raise SystemExit(
            f"fused test accuracy moved {-100 * gap:+.2f} points from fp32 (limit "
            f"{100 * MAX_ACCURACY_GAP:.1f}); {TARGET_DIR} left unchanged"
        )
    table = comparison(fp32, fp16, conversion)
    (built / EVALUATION_FILE).write_text(json.dumps(fp16, indent=2) + "\n")
    (built / REPORT_FILE).write_text(json.dumps(conversion, indent=2) + "\n")
    (built / MODEL_CARD_FILE).write_text(
        render_card(conversion, table.splitlines()), encoding="utf-8"
    )
    install(built, TARGET_DIR)
    log(
        f"fp16 bundle in {TARGET_DIR} ({time.perf_counter() - started:.0f} s, {device}): fused "
        f"test accuracy {fp16['metrics']['accuracy']:.4f} (fp32 {fp32['metrics']['accuracy']:.4f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
