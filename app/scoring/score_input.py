"""The input table of a scoring job, read as a stream: CSV, JSON Lines or Parquet in record
batches (never the whole file in memory), one ``InputRow`` at a time, and the file's
fingerprint (its size and streamed sha256) that a resumed job must find unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from app.bundle.loader import sha256_file
from app.scoring.score_errors import ScoreInputError

# Bytes a CSV or JSON reader parses at a time (about this much of the file is in memory).
BLOCK_BYTES = 1 << 20
PARQUET_BATCH_ROWS = 1024
FORMATS = {
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class Columns:
    """The names of the input's columns a job reads; ``id`` may be absent from the file (the
    row number is then the id), image or text may be absent, not both."""

    image: str = "image"
    text: str = "text"
    id: str = "id"


@dataclass(frozen=True)
class InputRow:
    """One input row: its 0-based number, its id, and its image path (relative to the input
    file's directory) and text, None where the cell is missing or empty."""

    number: int
    id: str
    image: str | None
    text: str | None


def input_format(path: Path) -> str:
    """``csv``, ``json`` (JSON Lines) or ``parquet``, from the file's suffix."""
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(FORMATS))
        raise ScoreInputError(f"{path.name}: unknown input format (suffixes: {known})")
    return found


def fingerprint(path: Path) -> str:
    """``size:sha256`` of the file, read in chunks."""
    return f"{path.stat().st_size}:{sha256_file(path)}"


def total_rows(path: Path) -> int | None:
    """The number of rows when the file says it without being read (Parquet), else None."""
    if input_format(path) != "parquet":
        return None
    rows: int = pq.ParquetFile(path).metadata.num_rows
    return rows


def read_rows(path: Path, columns: Columns) -> Iterator[InputRow]:
    """Every row of the table at ``path``, in order, read a batch at a time."""
    number = 0
    for batch in _batches(path, columns):
        ids = _values(batch, columns.id, batch.num_rows)
        images = _values(batch, columns.image, batch.num_rows)
        texts = _values(batch, columns.text, batch.num_rows)
        for i in range(batch.num_rows):
            row_id = str(number) if ids[i] is None else str(ids[i])
            yield InputRow(number, row_id, _cell(images[i]), _cell(texts[i]))
            number += 1


def _values(batch: pa.RecordBatch, name: str, rows: int) -> list[Any]:
    if name not in batch.schema.names:
        return [None] * rows
    values: list[Any] = batch.column(name).to_pylist()
    return values


def _cell(value: Any) -> str | None:
    """A cell as a string, None when null or empty."""
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _batches(path: Path, columns: Columns) -> Iterator[pa.RecordBatch]:
    if not path.is_file():
        raise ScoreInputError(f"{path}: no such input file")
    wanted = [columns.id, columns.image, columns.text]
    kind = input_format(path)
    try:
        names = _column_names(path, kind)
        if columns.image not in names and columns.text not in names:
            raise ScoreInputError(
                f"{path.name} has neither an image column ({columns.image!r}) nor a text "
                f"column ({columns.text!r})"
            )
        if kind == "parquet":
            parquet = pq.ParquetFile(path)
            present = [name for name in wanted if name in parquet.schema_arrow.names]
            yield from parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=present)
        elif kind == "csv":
            yield from pa_csv.open_csv(
                path,
                read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in wanted},
                    include_columns=wanted,
                    include_missing_columns=True,
                ),
            )
        else:
            # The image and text columns are strings whatever the first block holds (a block
            # of nulls would otherwise fix their type to null, and a later path fail).
            strings = pa.schema([(columns.image, pa.string()), (columns.text, pa.string())])
            yield from pa_json.open_json(
                path,
                read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES),
                parse_options=pa_json.ParseOptions(explicit_schema=strings),
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ScoreInputError(f"{path.name}: cannot be read as {kind}: {exc}") from exc


def _column_names(path: Path, kind: str) -> set[str]:
    """The table's columns: Parquet's schema, a CSV's header, the fields of a JSON Lines
    file's first block (the readers below add the missing ones as nulls, so they cannot
    tell)."""
    if kind == "parquet":
        return set(pq.ParquetFile(path).schema_arrow.names)
    if kind == "csv":
        csv_reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES))
        return set(csv_reader.schema.names)
    json_reader = pa_json.open_json(path, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES))
    return set(json_reader.schema.names)
