"""``train-head`` as the training tests run it: in-process, its standard output kept, and
what a finished run leaves for the tests to read."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.training import train_head


@dataclass(frozen=True)
class Trained:
    """A finished run: its base bundle, dataset, output bundle, report and standard output."""

    base: Path
    dataset: Path
    out: Path
    report: dict[str, Any]
    stdout: str


def train_head_args(dataset: Path, base: Path, out: Path, *extra: str) -> list[str]:
    """The command line for ``dataset`` over ``base`` into ``out``, without progress bars."""
    return [
        "--dataset", str(dataset), "--base-bundle", str(base), "--out", str(out),
        "--no-progress", *extra,
    ]  # fmt: skip


def run_train_head(*args: str) -> tuple[int, str]:
    """``train-head`` in this process: its exit status and standard output."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = train_head.main(list(args))
    return code, buffer.getvalue()


def train_bundle(base: Path, dataset: Path, out: Path, *extra: str) -> Trained:
    """Run ``train-head`` (it must succeed) and read what it wrote."""
    code, stdout = run_train_head(*train_head_args(dataset, base, out, *extra))
    assert code == 0, stdout
    report = json.loads((out / "training_report.json").read_text())
    return Trained(base, dataset, out, report, stdout)
