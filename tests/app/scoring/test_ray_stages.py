"""The Ray engine's preparing task without Ray: a block of input rows prepared into the rows
the model stage reads (pixels and token ids, or the row's error), by one ``PrepareStage`` per
worker process, kept from one task to the next and built anew for another job's config."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from app.core.encoder_pipeline import PreparedItem
from app.core.item_preparer import build_preparer
from app.scoring import ray_stages
from app.scoring.ray_stages import (
    INPUT_SCHEMA,
    PREPARED_SCHEMA,
    PrepareConfig,
    prepare_block,
)
from app.scoring.score_input import InputRow
from app.scoring.score_steps import prepare_row
from tests.support.app_setup import make_settings
from tests.support.score_tables import write_images


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a worker process's first task."""
    monkeypatch.setattr(ray_stages, "_PROCESS_STAGE", {})


def _config(bundle: Path, base: Path, threads: int = 1) -> PrepareConfig:
    return PrepareConfig(make_settings(bundle), base=base, threads=threads, timeout_s=30.0)


def _array(data: bytes) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
    return array


def _block(images: Sequence[str | None]) -> pa.Table:
    rows = [
        {"shard": 4, "position": i, "id": f"r{i}", "image": image, "text": f"a photo {i}"}
        for i, image in enumerate(images)
    ]
    return pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)


def test_a_block_becomes_prepared_rows_and_errors(
    optional_bundle_dir: Path, tmp_path: Path
) -> None:
    images = write_images(tmp_path, 2)
    block = _block([images[0], "images/missing.png", images[1]])
    config = _config(optional_bundle_dir, tmp_path)
    prepared = prepare_block(block, config)
    assert prepared.schema == PREPARED_SCHEMA
    rows = prepared.to_pylist()
    assert [(r["shard"], r["position"], r["id"]) for r in rows] == [
        (4, 0, "r0"),
        (4, 1, "r1"),
        (4, 2, "r2"),
    ]
    assert (rows[1]["error_stage"], rows[1]["error_code"]) == ("read", "image_not_found")
    assert rows[1]["pixels"] is None
    # The good rows as the local engine prepares them, dtype and shape kept.
    preparer = build_preparer(config.settings)
    for position in (0, 2):
        row = rows[position]
        assert row["error_code"] is None
        local = prepare_row(
            preparer,
            tmp_path,
            InputRow(position, row["id"], images[position // 2], row["text"]),
            config.settings.max_image_bytes,
        )
        assert isinstance(local, PreparedItem)
        np.testing.assert_array_equal(_array(row["pixels"]), local.pixels, strict=True)
        np.testing.assert_array_equal(_array(row["token_ids"]), local.token_ids, strict=True)


def test_the_process_keeps_its_stage_for_the_same_config(
    optional_bundle_dir: Path, tmp_path: Path
) -> None:
    images = write_images(tmp_path, 1)
    config = _config(optional_bundle_dir, tmp_path)
    prepare_block(_block(images), config)
    first = ray_stages._PROCESS_STAGE["stage"]
    # A task of the same job: its config arrives unpickled, equal but not the same object.
    prepare_block(_block(images), _config(optional_bundle_dir, tmp_path))
    assert ray_stages._PROCESS_STAGE["stage"] is first

    other = _config(optional_bundle_dir, tmp_path, threads=2)
    prepare_block(_block(images), other)
    rebuilt = ray_stages._PROCESS_STAGE["stage"]
    assert rebuilt is not first
    assert rebuilt.config == other
    with pytest.raises(RuntimeError, match="shutdown"):  # the old stage's threads were let go
        first.pool.submit(print)
