"""The two Ray Data stages of ``fusionserve score --engine ray``: ``prepare_block``, a Ray task
that turns a block of input rows into prepared rows (``prepare_row``, in threads, each row
within its deadline) with its worker process's ``PrepareStage`` (the bundle's policy, decoder
and tokenizer, no model: loaded by the process's first such task and kept for the next), and
``ModelStage``, a callable class that an actor pool holds (the whole engine, loaded once per
actor in ``__init__``), that runs prepared rows through the model (``score_items``) into
output records. Both are the local engine's steps (``app.scoring.score_steps``); between them a
prepared row travels as Arrow columns: its decoded pixels and token ids as ``.npy`` bytes
(dtype and shape kept, never pickled), or its error. Every row carries its shard and its
position in the shard, because Ray does not keep the rows' order.

Preparation runs as tasks, not actors: a task holds its CPU only while it runs, so when a node
is lost the model actors Ray restarts on the nodes left get CPUs as soon as the running
preparing tasks end. An elastic pool of preparing actors kept the CPUs it held, and Ray Data
does not shrink a pool while one of its actors is restarting (the lost node's actor counts as
pending), so such a job waited with no model actor until its stall timeout."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import build_engine
from app.core.item_preparer import build_preparer
from app.scoring.score_answers import AnswerColumns, RowError, error_record
from app.scoring.score_input import InputRow
from app.scoring.score_output import output_schema
from app.scoring.score_steps import prepare_row, prepared_within, score_items

# Where a row belongs: its shard and its place in it (the output's order is rebuilt from them).
PLACE_FIELDS = [
    pa.field("shard", pa.int64(), nullable=False),
    pa.field("position", pa.int64(), nullable=False),
]
INPUT_SCHEMA = pa.schema(
    [
        *PLACE_FIELDS,
        pa.field("id", pa.string(), nullable=False),
        pa.field("image", pa.string()),
        pa.field("text", pa.string()),
    ]
)
PREPARED_SCHEMA = pa.schema(
    [
        *PLACE_FIELDS,
        pa.field("id", pa.string(), nullable=False),
        pa.field("error_stage", pa.string()),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("text", pa.string()),
        pa.field("pixels", pa.binary()),
        pa.field("token_ids", pa.binary()),
    ]
)


def placed_schema(all_probabilities: bool) -> pa.Schema:
    """The model stage's output: the job's output columns after the row's shard and
    position."""
    schema = output_schema(all_probabilities)
    return pa.schema([*PLACE_FIELDS, *schema])


@dataclass(frozen=True)
class PrepareConfig:
    """What a preparing task needs: the service's settings (the bundle, the limits), the
    folder image paths are relative to, the threads it prepares rows in, and each row's
    deadline."""

    settings: Settings
    base: Path
    threads: int
    timeout_s: float


class PrepareStage:
    """Input rows to prepared rows: the preparer and the threads of one worker process."""

    def __init__(self, config: PrepareConfig) -> None:
        self.config = config
        self.preparer = build_preparer(config.settings)  # no ONNX Runtime session
        self.pool = ThreadPoolExecutor(config.threads, thread_name_prefix="score-prepare")

    def close(self) -> None:
        """Let its threads end (a row still running finishes first)."""
        self.pool.shutdown(wait=False)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        limit = self.config.settings.max_image_bytes
        futures = [
            self.pool.submit(
                prepare_row,
                self.preparer,
                self.config.base,
                InputRow(row["position"], row["id"], row["image"], row["text"]),
                limit,
            )
            for row in rows
        ]
        prepared = [
            _prepared_record(row, prepared_within(future, self.config.timeout_s))
            for row, future in zip(rows, futures, strict=True)
        ]
        return pa.Table.from_pylist(prepared, schema=PREPARED_SCHEMA)


# The worker process's preparing stage (``prepare_block``): filled by its first task.
_PROCESS_STAGE: dict[str, PrepareStage] = {}


def prepare_block(batch: pa.Table, config: PrepareConfig) -> pa.Table:
    """A preparing task (``map_batches`` over ``INPUT_SCHEMA`` blocks): ``batch``'s rows
    prepared by this worker process's ``PrepareStage`` for ``config``, built by the first
    task and kept for the next ones (Ray reuses a job's worker processes), built anew when a
    task brings another config."""
    stage = _PROCESS_STAGE.get("stage")
    if stage is None or stage.config != config:
        if stage is not None:
            stage.close()
        stage = _PROCESS_STAGE["stage"] = PrepareStage(config)
    return stage(batch)


class ModelStage:
    """Prepared rows to output records (``map_batches`` a block's worth of rows at a time,
    so one Ray task per block, not per batch): the accepted rows run in batches of
    ``max_batch_size``, the others keep their errors."""

    def __init__(self, settings: Settings, columns: AnswerColumns) -> None:
        self.engine = build_engine(settings)
        self.batch_size = settings.max_batch_size
        self.columns = columns
        self.schema = placed_schema(columns.all_probabilities)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        records: list[dict[str, Any] | None] = [None] * len(rows)
        accepted: list[int] = []
        for i, row in enumerate(rows):
            if row["error_code"] is None:
                accepted.append(i)
            else:
                error = RowError(row["error_stage"], row["error_code"], row["error_message"])
                records[i] = error_record(row["id"], error)
        size = self.batch_size
        for start in range(0, len(accepted), size):
            chunk = accepted[start : start + size]
            ids = [rows[i]["id"] for i in chunk]
            items = [_prepared_item(rows[i]) for i in chunk]
            for i, record in zip(
                chunk, score_items(self.engine, self.columns, ids, items), strict=True
            ):
                records[i] = record
        placed = [
            {"shard": row["shard"], "position": row["position"]} | record
            for row, record in zip(rows, records, strict=True)
            if record is not None
        ]
        return pa.Table.from_pylist(placed, schema=self.schema)


def _prepared_record(row: dict[str, Any], outcome: PreparedItem | RowError) -> dict[str, Any]:
    record = {"shard": row["shard"], "position": row["position"], "id": row["id"]}
    if isinstance(outcome, RowError):
        return record | {
            "error_stage": outcome.stage,
            "error_code": outcome.code,
            "error_message": outcome.message,
        }
    return record | {
        "text": outcome.text,
        "pixels": _array_bytes(outcome.pixels),
        "token_ids": _array_bytes(outcome.token_ids),
    }


def _prepared_item(row: dict[str, Any]) -> PreparedItem:
    return PreparedItem(
        pixels=_bytes_array(row["pixels"]),
        text=row["text"],
        token_ids=_bytes_array(row["token_ids"]),
    )


def _array_bytes(array: np.ndarray | None) -> bytes | None:
    if array is None:
        return None
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _bytes_array(data: bytes | None) -> np.ndarray | None:
    if data is None:
        return None
    array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
    return array
