"""A scoring job in-process: the same output whatever the input format, each kind of bad row
recorded with the service's code, the error-rate stop, the ranking columns, a multilabel
bundle's label sets, and the refusal to mix jobs unless ``force``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from app.scoring.score_errors import ErrorRateExceeded, JobMismatch
from app.scoring.score_output import ScoreOutput
from tests.support.images import encode_image, photo
from tests.support.score_tables import run_job, write_images, write_table
from tests.support.tiny_bundle import TAG_THRESHOLDS, TAGS, make_tiny_multilabel_bundle


def _rows(folder: Path, count: int) -> list[dict[str, str | None]]:
    images = write_images(folder, 4)
    return [
        {"id": f"r{i}", "image": images[i % 4], "text": f"a photo number {i}"} for i in range(count)
    ]


def test_csv_jsonl_and_parquet_give_the_same_output(
    optional_bundle_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(tmp_path, 12)
    rows[3]["image"] = None
    rows[5]["text"] = None
    outputs = []
    for suffix in (".csv", ".jsonl", ".parquet"):
        table = write_table(tmp_path / f"in{suffix}", rows)
        summary, result = run_job(optional_bundle_dir, table, tmp_path / suffix, shard_rows=5)
        assert (summary.ok, summary.error) == (12, 0)
        outputs.append(result)
    assert outputs[0].column("id").to_pylist() == [f"r{i}" for i in range(12)]
    assert outputs[0].equals(outputs[1])
    assert outputs[0].equals(outputs[2])
    assert sorted(p.name for p in (tmp_path / ".csv").iterdir()) == [
        "job.json",
        "part-00000.done",
        "part-00000.parquet",
        "part-00001.done",
        "part-00001.parquet",
        "part-00002.done",
        "part-00002.parquet",
    ]


def test_ids_are_row_numbers_without_an_id_column(
    optional_bundle_dir: Path, tmp_path: Path
) -> None:
    rows = [{"image": row["image"], "text": row["text"]} for row in _rows(tmp_path, 3)]
    table = write_table(tmp_path / "in.jsonl", rows)
    _, result = run_job(optional_bundle_dir, table, tmp_path / "out", limit=2)
    assert result.column("id").to_pylist() == ["0", "1"]


def test_each_bad_row_is_recorded_with_the_services_code(
    tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    images = write_images(tmp_path, 1)
    (tmp_path / "broken.png").write_bytes(b"these bytes are not an image")
    (tmp_path / "big.png").write_bytes(encode_image(photo(200, 200)))
    rows = [
        {"id": "good", "image": images[0], "text": "a cat"},
        {"id": "missing", "image": "images/nowhere.png", "text": "a cat"},
        {"id": "undecodable", "image": "broken.png", "text": "a cat"},
        {"id": "blank text", "image": images[0], "text": "   "},
        {"id": "too many pixels", "image": "big.png", "text": "a cat"},
        {"id": "no text", "image": images[0], "text": None},
    ]
    table = write_table(tmp_path / "in.csv", rows)
    summary, result = run_job(
        tiny_bundle_dir, table, tmp_path / "out", settings={"max_image_pixels": 100 * 100}
    )
    assert (summary.ok, summary.error) == (1, 5)
    found = {
        row["id"]: (row["status"], row["error_stage"], row["error_code"])
        for row in result.to_pylist()
    }
    assert found == {
        "good": ("ok", None, None),
        "missing": ("error", "read", "image_not_found"),
        "undecodable": ("error", "decode", "unsupported_image_format"),
        "blank text": ("error", "validate", "invalid_text"),
        "too many pixels": ("error", "decode", "image_too_large"),
        "no text": ("error", "validate", "modality_required"),
    }
    assert all(row["error_message"] for row in result.to_pylist() if row["status"] == "error")


def test_the_job_stops_once_the_error_rate_is_over_the_limit(
    optional_bundle_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(tmp_path, 60)
    for row in rows[:30]:
        row["image"] = "images/nowhere.png"
    table = write_table(tmp_path / "in.csv", rows)
    with pytest.raises(ErrorRateExceeded, match="20 of the 20 rows"):
        run_job(optional_bundle_dir, table, tmp_path / "out", shard_rows=10)
    assert sorted(ScoreOutput(tmp_path / "out").committed_shards()) == [0, 1]


def test_top_k_and_all_probabilities(optional_bundle_dir: Path, tmp_path: Path) -> None:
    table = write_table(tmp_path / "in.parquet", _rows(tmp_path, 4))
    _, ranked = run_job(optional_bundle_dir, table, tmp_path / "top", top_k=2)
    _, every = run_job(optional_bundle_dir, table, tmp_path / "all", all_probabilities=True)
    assert "probabilities" not in ranked.column_names
    assert "top_k" not in every.column_names
    assert every.schema.field("probabilities").type == pa.list_(pa.float64())
    labels = json.loads((optional_bundle_dir / "manifest.json").read_text())["labels"]
    for top, full in zip(ranked.to_pylist(), every.to_pylist(), strict=True):
        probabilities = np.array(full["probabilities"])
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        order = np.argsort(-probabilities, kind="stable")[:2]
        assert [p["label"] for p in top["top_k"]] == [labels[i] for i in order]
        assert [p["probability"] for p in top["top_k"]] == list(probabilities[order])
        assert top["label"] == full["label"] == labels[order[0]]
        assert top["labels"] == [top["label"]]


def test_a_multilabel_bundle_gives_its_label_set(tmp_path: Path) -> None:
    bundle = tmp_path / "multilabel"
    make_tiny_multilabel_bundle(bundle)
    table = write_table(tmp_path / "in.jsonl", _rows(tmp_path, 8))
    _, result = run_job(bundle, table, tmp_path / "out", all_probabilities=True)
    for row in result.to_pylist():
        probabilities = row["probabilities"]
        expected = sorted(
            (t for t, p, cut in zip(TAGS, probabilities, TAG_THRESHOLDS, strict=True) if p >= cut),
            key=lambda tag: -probabilities[TAGS.index(tag)],
        )
        assert row["labels"] == expected


def test_a_changed_input_or_bundle_or_options_is_refused_unless_forced(
    optional_bundle_dir: Path, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    rows = _rows(tmp_path, 6)
    table = write_table(tmp_path / "in.csv", rows)
    out = tmp_path / "out"
    run_job(optional_bundle_dir, table, out, shard_rows=3)
    summary, _ = run_job(optional_bundle_dir, table, out, shard_rows=3)
    assert (summary.rows, summary.skipped) == (0, 6)  # resumed: nothing left to do
    with pytest.raises(JobMismatch, match="bundle"):
        run_job(tiny_bundle_dir, table, out, shard_rows=3)
    with pytest.raises(JobMismatch, match="options"):
        run_job(optional_bundle_dir, table, out, shard_rows=2)
    write_table(table, rows[:5])
    with pytest.raises(JobMismatch, match="input file"):
        run_job(optional_bundle_dir, table, out, shard_rows=3)
    summary, result = run_job(optional_bundle_dir, table, out, shard_rows=2, force=True)
    assert (summary.rows, summary.skipped) == (5, 0)
    assert result.column("id").to_pylist() == [f"r{i}" for i in range(5)]
    assert sorted(ScoreOutput(out).committed_shards()) == [0, 1, 2]


def test_a_directory_of_other_files_is_refused(optional_bundle_dir: Path, tmp_path: Path) -> None:
    table = write_table(tmp_path / "in.csv", _rows(tmp_path, 2))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(JobMismatch, match="not a scoring job"):
        run_job(optional_bundle_dir, table, tmp_path / "out")
