"""The input reader: CSV, JSON Lines and Parquet give the same rows; ids from the id column
or the row number; empty cells are missing; the fingerprint changes with the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.scoring.score_errors import ScoreInputError
from app.scoring.score_input import Columns, InputRow, fingerprint, read_rows
from tests.support.score_tables import write_table

ROWS = [
    {"id": "a", "image": "images/0.png", "text": "a cat"},
    {"id": "b", "image": None, "text": "a dog"},
    {"id": "c", "image": "images/1.png", "text": ""},
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path: Path, suffix: str) -> None:
    table = write_table(tmp_path / f"in{suffix}", ROWS)
    assert list(read_rows(table, Columns())) == [
        InputRow(0, "a", "images/0.png", "a cat"),
        InputRow(1, "b", None, "a dog"),
        InputRow(2, "c", "images/1.png", None),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_without_an_id_column_the_row_number_is_the_id(tmp_path: Path, suffix: str) -> None:
    rows = [{"image": row["image"], "text": row["text"]} for row in ROWS]
    table = write_table(tmp_path / f"in{suffix}", rows)
    assert [row.id for row in read_rows(table, Columns())] == ["0", "1", "2"]


def test_other_column_names_are_read(tmp_path: Path) -> None:
    table = tmp_path / "in.csv"
    table.write_text("key,picture,caption\nk1,p.png,hello\n", encoding="utf-8")
    rows = list(read_rows(table, Columns(image="picture", text="caption", id="key")))
    assert rows == [InputRow(0, "k1", "p.png", "hello")]


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "in.xlsx"
    table.write_bytes(b"")
    with pytest.raises(ScoreInputError, match="unknown input format"):
        list(read_rows(table, Columns()))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_table_without_image_or_text_column_is_refused(tmp_path: Path, suffix: str) -> None:
    table = write_table(tmp_path / f"in{suffix}", [{"id": "a"}])
    with pytest.raises(ScoreInputError, match="neither an image column"):
        list(read_rows(table, Columns()))


def test_json_lines_whose_first_block_has_no_paths_or_texts_read_on(tmp_path: Path) -> None:
    """Past the reader's first block (1 MiB here, ~20,000 rows) a path and a text still read
    as strings; numbers as ids read too."""
    rows = [{"id": i, "image": None, "text": None} for i in range(30_000)]
    rows.append({"id": 30_000, "image": "a.png", "text": "a title"})
    table = tmp_path / "in.jsonl"
    table.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    read = list(read_rows(table, Columns()))
    assert len(read) == 30_001
    assert read[0] == InputRow(0, "0", None, None)
    assert read[-1] == InputRow(30_000, "30000", "a.png", "a title")


def test_the_fingerprint_follows_the_content(tmp_path: Path) -> None:
    table = write_table(tmp_path / "in.csv", ROWS)
    before = fingerprint(table)
    assert fingerprint(table) == before
    write_table(table, ROWS[:2])
    assert fingerprint(table) != before
