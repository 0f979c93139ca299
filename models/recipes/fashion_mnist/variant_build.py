"""What the recipes of the default bundle's variants (int8, fp16) share: running the project's
own commands, the dataset, the committed reports, the comparison with fp32 and installing.

Each variant is made from ``models/default`` by a ``fusionserve`` command, evaluated on the
held-out **test** split exactly as ``models/default`` was, compared with
``models/default/evaluation.json`` and only then put in place, its weights git-ignored and its
reports committed.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.bundle.loader import load_bundle
from models.export.bundle_files import link_or_copy, staged_bundle
from models.recipes.fashion_mnist import model_card

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_DIR = REPO_ROOT / "models" / "default"
WORK_DIR = REPO_ROOT / "models" / ".cache" / "default-head"
EVALUATION_FILE = "evaluation.json"


def log(message: str) -> None:
    print(message, flush=True)


def run_module(*args: str) -> None:
    """``python -m`` one of the project's modules from the repository root; fails loudly."""
    command = [sys.executable, "-m", *args]
    log(f"$ {' '.join(command[1:])}")
    subprocess.run(command, check=True, cwd=REPO_ROOT)


def relative(path: Path) -> str:
    """``path`` relative to the repository when inside it: reports stay machine-independent."""
    absolute = Path(os.path.abspath(path))  # not resolve(): models/.cache may be a symlink
    try:
        return str(absolute.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_dataset(work: Path, seed: int, data_dir: Path | None) -> str:
    """The default head's dataset (same seed, same rows) under ``work``; its path."""
    data = work / "data"
    arguments = ["models.recipes.fashion_mnist.dataset_writer", "--out", relative(data)]
    arguments += ["--seed", str(seed)]
    if data_dir is not None:
        arguments += ["--data-dir", str(data_dir)]
    run_module(*arguments)
    return relative(data / "dataset.jsonl")


def portable(evaluation: dict[str, Any], target: Path) -> dict[str, Any]:
    """The evaluation report of the bundle installed in ``target`` without this machine's
    paths (it is committed)."""
    report = copy.deepcopy(evaluation)
    report["bundle"]["path"] = relative(target)
    report["dataset"]["path"] = model_card.DATASET
    report["dataset"]["image_root"] = "images/"
    return report


def accuracy_drop(fp32: dict[str, Any], variant: dict[str, Any]) -> float:
    return float(fp32["metrics"]["accuracy"] - variant["metrics"]["accuracy"])


def _rows(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["input"]: row for row in evaluation["ablation"]}


def accuracy_table(fp32: dict[str, Any], variant: dict[str, Any], name: str) -> list[str]:
    """Markdown rows: fused, image-only and text-only accuracy and macro-F1, served ECE and
    NLL of ``models/default`` and the variant (``name``, e.g. ``int8``), side by side."""
    a, b = _rows(fp32), _rows(variant)
    lines = [
        f"| Test split | fp32 (`models/default`) | {name} (`models/default-{name}`) | "
        f"{name} - fp32 |",
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
    for title, metric in (("ECE (served, temperature-scaled)", "ece"), ("NLL (served)", "nll")):
        x, y = fp32["calibration"]["after"][metric], variant["calibration"]["after"][metric]
        lines.append(f"| {title} | {x:.4f} | {y:.4f} | {y - x:+.4f} |")
    return lines


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
