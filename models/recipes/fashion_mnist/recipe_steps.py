"""The steps the recipes of the shipped bundles share: each runs the same command a user runs
(``python -m ...``, in a child process, echoed), so a recipe is a script of documented
commands."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def log(message: str) -> None:
    print(message, flush=True)


def run_module(*args: str) -> None:
    """``python -m args...``; raises ``CalledProcessError`` when it fails."""
    command = [sys.executable, "-m", *args]
    log(f"$ {' '.join(command[1:])}")
    subprocess.run(command, check=True)


def recipe_arguments(
    description: str, work_dir: Path, argv: list[str] | None
) -> argparse.Namespace:
    """A head recipe's options: ``--work`` (dataset, bundle, reports), ``--seed`` and
    ``--data-dir`` (the Fashion-MNIST idx files)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work", type=Path, default=work_dir, help="dataset, bundle, reports")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, help="Fashion-MNIST idx files")
    return parser.parse_args(argv)


def write_dataset(writer: str, out: Path, seed: int, data_dir: Path | None) -> None:
    """Run the dataset writer module ``writer`` into ``out``."""
    options = ["--out", str(out), "--seed", str(seed)]
    if data_dir is not None:
        options += ["--data-dir", str(data_dir)]
    run_module(writer, *options)


def train_head(
    dataset: Path,
    base: Path,
    out: Path,
    labels: Sequence[str],
    *,
    seed: int,
    name: str,
    version: str,
    description: str,
    options: Sequence[str] = (),
) -> None:
    """``fusionserve train-head`` over ``base``'s encoders into ``out`` (replaced)."""
    run_module(
        "models.training.train_head",
        *options,
        "--dataset", str(dataset),
        "--base-bundle", str(base),
        "--out", str(out),
        "--force",
        "--labels", ",".join(labels),
        "--seed", str(seed),
        "--name", name,
        "--version", version,
        "--description", description,
    )  # fmt: skip


def evaluate_test_split(bundle: Path, dataset: Path, out: Path) -> None:
    """``fusionserve evaluate`` of ``bundle`` on the test split into ``out`` (replaced)."""
    shutil.rmtree(out, ignore_errors=True)
    run_module(
        "models.evaluation.evaluate",
        "--bundle", str(bundle),
        "--dataset", str(dataset),
        "--split", "test",
        "--out", str(out),
    )  # fmt: skip
