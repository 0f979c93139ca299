"""The two stages of a scoring job measured apart, one CPU each, for sizing a cluster: rows
per second one core prepares (``prepare_row``: file read, request policy, decode, tokenise,
one thread) and rows per second one model CPU scores (``score_items`` in batches of
``max_batch_size`` on rows prepared beforehand, ONNX Runtime on one intra-op thread). Both are
the functions both engines run (``app.scoring.score_steps``)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import build_engine
from app.scoring.score_answers import AnswerColumns, RowError
from app.scoring.score_input import Columns, read_rows
from app.scoring.score_steps import prepare_row, score_items

COLUMNS = AnswerColumns(top_k=5, all_probabilities=False)


def stage_rates(bundle: Path, table: Path, rows: int) -> dict[str, Any]:
    """Rows/s of each stage on one CPU over the first ``rows`` rows of ``table``."""
    settings = Settings(bundle_path=bundle, device="cpu", intra_op_threads=1, inter_op_threads=1)
    engine = build_engine(settings)
    limit = settings.max_image_bytes
    inputs = list(itertools.islice(read_rows(table, Columns()), rows))
    started = time.perf_counter()
    preparer = engine.preparer
    prepared = [prepare_row(preparer, table.parent, row, limit) for row in inputs]
    prepare_s = time.perf_counter() - started
    accepted = [
        (row.id, item)
        for row, item in zip(inputs, prepared, strict=True)
        if isinstance(item, PreparedItem)
    ]
    ids = [row_id for row_id, _ in accepted]
    items = [item for _, item in accepted]
    failed = sum(isinstance(item, RowError) for item in prepared)
    size = settings.max_batch_size
    score_items(engine, COLUMNS, ids[:size], items[:size])  # the arenas grown first
    started = time.perf_counter()
    for start in range(0, len(items), size):
        score_items(engine, COLUMNS, ids[start : start + size], items[start : start + size])
    model_s = time.perf_counter() - started
    return {
        "rows": len(inputs),
        "rows_failed": failed,
        "batch_size": size,
        "prepare_rows_per_s_per_core": round(len(inputs) / prepare_s, 2),
        "model_rows_per_s_per_cpu": round(len(items) / model_s, 2),
    }
