"""Input tables for ``fusionserve score`` tests: image files next to a CSV, JSON Lines or
Parquet table that names them."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.scoring.score_answers import AnswerColumns
from app.scoring.score_input import Columns
from app.scoring.score_job import ScoreOptions, run_score
from app.scoring.score_output import ScoreOutput
from app.scoring.score_progress import ScoreSummary
from tests.support.app_setup import make_settings
from tests.support.images import encode_image, photo

COLUMNS = ("id", "image", "text")


def write_images(folder: Path, count: int) -> list[str]:
    """``count`` distinct PNG photos under ``folder/images``; their paths relative to
    ``folder``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"images/{i}.png"
        (folder / name).write_bytes(encode_image(photo(seed=i)))
        names.append(name)
    return names


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """``rows`` (dicts over ``COLUMNS``, a missing key or None an empty cell) as the table
    its suffix names: ``.csv``, ``.jsonl`` or ``.parquet``."""
    present = [name for name in COLUMNS if any(name in row for row in rows)]
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=present)
            writer.writeheader()
            writer.writerows(
                {k: "" if row.get(k) is None else row[k] for k in present} for row in rows
            )
    elif path.suffix == ".jsonl":
        lines = [json.dumps({k: row.get(k) for k in present}) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        columns = {k: pa.array([row.get(k) for row in rows], pa.string()) for k in present}
        pq.write_table(pa.table(columns), path)
    return path


def score_command(bundle: Path, table: Path, output: Path, *options: str) -> list[str]:
    """The ``fusionserve score`` command line (this Python, CPU) scoring ``table`` into
    ``output`` with ``bundle``, then ``options``."""
    return [
        sys.executable, "-m", "app", "score",
        "--bundle", str(bundle), "--device", "cpu",
        "--input", str(table), "--output", str(output),
        *options,
    ]  # fmt: skip


def run_job(
    bundle: Path,
    table: Path,
    output: Path,
    *,
    settings: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[ScoreSummary, pa.Table]:
    """Score ``table`` into ``output`` in-process with ``bundle`` (test settings plus
    ``settings``) and ``options`` (``ScoreOptions`` fields, ``top_k``, ``all_probabilities``);
    the summary and every committed row."""
    answer = AnswerColumns(
        top_k=options.pop("top_k", 5), all_probabilities=options.pop("all_probabilities", False)
    )
    chosen = ScoreOptions(
        input=table,
        output=output,
        columns=options.pop("columns", Columns()),
        answer=answer,
        **({"workers": 2, "progress_every_s": 3600.0} | options),
    )
    summary = run_score(chosen, make_settings(bundle, **(settings or {})))
    return summary, ScoreOutput(output).read_results()
