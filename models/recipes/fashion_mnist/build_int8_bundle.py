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
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.bundle.loader import load_bundle
from app.bundle.manifest import MANIFEST_FILENAME
from models.export.bundle_files import link_or_copy, staged_bundle
from models.quantization.quantize_bundle import MODEL_CARD_FILE, REPORT_FILE
from models.recipes.fashion_mnist import model_card
from models.reporting.doc_sections import replace_section
from models.reporting.quantize_card import render_card

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_DIR = REPO_ROOT / "models" / "default"
TARGET_DIR = REPO_ROOT / "models" / "default-int8"
WORK_DIR = REPO_ROOT / "models" / ".cache" / "default-head"
DOC = REPO_ROOT / "docs" / "int8.md"
EVALUATION_FILE = "evaluation.json"
MAX_ACCURACY_DROP = 0.01  # fused test accuracy, int8 against fp32


def _log(message: str) -> None:
    print(message, flush=True)


def _run(*args: str) -> None:
    command = [sys.executable, "-m", *args]
    _log(f"$ {' '.join(command[1:])}")
    subprocess.run(command, check=True, cwd=REPO_ROOT)


def _relative(path: Path) -> str:
    """``path`` relative to the repository when inside it: reports stay machine-independent."""
    absolute = Path(os.path.abspath(path))  # not resolve(): models/.cache may be a symlink
    try:
        return str(absolute.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def portable(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation report without this machine's paths (it is committed)."""
    report = copy.deepcopy(evaluation)
    report["bundle"]["path"] = _relative(TARGET_DIR)
    report["dataset"]["path"] = model_card.DATASET
    report["dataset"]["image_root"] = "images/"
    return report


def _rows(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["input"]: row for row in evaluation["ablation"]}


def accuracy_drop(fp32: dict[str, Any], int8: dict[str, Any]) -> float:
    return float(fp32["metrics"]["accuracy"] - int8["metrics"]["accuracy"])


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def comparison(fp32: dict[str, Any], int8: dict[str, Any], quantization: dict[str, Any]) -> str:
    """Markdown: the two bundles side by side on the test split, sizes, cosines, verdict."""
    a, b = _rows(fp32), _rows(int8)
    lines = [
        f"Test split of the Fashion-MNIST dataset ({int8['dataset']['examples']} rows, never "
        "used for calibration), `fusionserve evaluate` on both bundles; the fusion head is the "
        "same file.",
        "",
        "| Test split | fp32 (`models/default`) | int8 (`models/default-int8`) | int8 - fp32 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, title in (
        ("fused", "Fused"),
        ("image_only", "Image only"),
        ("text_only", "Text only"),
    ):
        for metric, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            x, y = a[key][metric], b[key][metric]
            lines.append(f"| {title} {label} | {x:.4f} | {y:.4f} | {100 * (y - x):+.2f} pt |")
    for name, x, y in (
        ("ECE (served, temperature-scaled)", fp32["calibration"]["after"]["ece"],
         int8["calibration"]["after"]["ece"]),
        ("NLL (served)", fp32["calibration"]["after"]["nll"], int8["calibration"]["after"]["nll"]),
    ):  # fmt: skip
        lines.append(f"| {name} | {x:.4f} | {y:.4f} | {y - x:+.4f} |")
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


def install(bundle: Path, target: Path) -> None:
    """Put the checked bundle's files into ``target``: the models and the tokenizer
    hard-linked (else copied), the small files copied (they are committed)."""
    models = {ref.file for ref in load_bundle(bundle).manifest.files().values()}
    with staged_bundle(target, SOURCE_DIR, force=True) as staging:
        for path in sorted(bundle.iterdir()):
            if path.name in models:
                link_or_copy(path, staging / path.name)
            else:
                shutil.copyfile(path, staging / path.name)


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
    data, built, evaluated = work / "data", work / "int8" / "bundle", work / "int8" / "evaluation"
    dataset_args = [
        "models.recipes.fashion_mnist.dataset_writer",
        "--out",
        _relative(data),
        "--seed",
        str(args.seed),
    ]
    if args.data_dir is not None:
        dataset_args += ["--data-dir", str(args.data_dir)]
    _run(*dataset_args)
    dataset = _relative(data / "dataset.jsonl")
    _run(
        "models.quantization.quantize_bundle", _relative(SOURCE_DIR), _relative(built),
        "--calibration-data", dataset,
        "--split", "train",
        "--samples", str(args.samples),
        "--seed", str(args.seed),
        "--force",
        "--no-progress",
    )  # fmt: skip
    _run(
        "models.evaluation.evaluate",
        "--bundle", _relative(built),
        "--dataset", dataset,
        "--split", "test",
        "--out", _relative(evaluated),
    )  # fmt: skip
    fp32 = json.loads((SOURCE_DIR / EVALUATION_FILE).read_text())
    int8 = portable(json.loads((evaluated / "report.json").read_text()))
    quantization = json.loads((built / REPORT_FILE).read_text())
    quantization["source"]["path"] = _relative(SOURCE_DIR)
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
    _log(
        f"int8 bundle in {TARGET_DIR} ({time.perf_counter() - started:.0f} s): fused test "
        f"accuracy {int8['metrics']['accuracy']:.4f} (fp32 {fp32['metrics']['accuracy']:.4f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
