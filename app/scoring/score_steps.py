"""The two steps every scoring engine runs on a row, the same functions for the local engine
(``app.scoring.score_rows``) and the Ray stages (``app.scoring.ray_stages``): a row prepared
(its image file read, the request policy applied, the image decoded, the text tokenised) into
the item the service's batcher would hold, or the error of the stage that failed; and a batch
of prepared rows through the model into output records, each item alone when the batch fails
(as the service's batcher does). Every failure is a row's error record, with the stage and the
code the service would answer."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from app.core.classification import ClassifyInput
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine
from app.core.item_preparer import ItemPreparer
from app.errors import DeadlineExceeded, InferenceFailed, PayloadTooLarge, RequestError
from app.scoring.score_answers import AnswerColumns, RowError, answer_record, error_record
from app.scoring.score_input import InputRow

IMAGE_NOT_FOUND = "image_not_found"
IMAGE_UNREADABLE = "image_unreadable"
INTERNAL_ERROR = "internal_error"


def prepare_row(
    preparer: ItemPreparer, base: Path, row: InputRow, max_image_bytes: int
) -> PreparedItem | RowError:
    """The row read (its image relative to ``base``), checked, decoded and tokenised, or the
    error of the stage that failed."""
    stage = "read"
    try:
        image = None if row.image is None else read_image(base, row.image, max_image_bytes)
        if isinstance(image, RowError):
            return image
        stage = "validate"
        item = preparer.policy.check(ClassifyInput(image, row.text))
        stage = "decode"
        pixels = None if item.image is None else preparer.decode(item.image)
        stage = "tokenise"
        token_ids = None if item.text is None else preparer.tokenise(item.text)
    except RequestError as exc:
        return RowError(stage, exc.code, exc.message)
    except Exception as exc:  # a broken row must not end the job: it is recorded
        return RowError(stage, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
    return PreparedItem(pixels=pixels, text=item.text, token_ids=token_ids)


def prepared_within(
    future: Future[PreparedItem | RowError], timeout_s: float
) -> PreparedItem | RowError:
    """A row's preparation under way in a thread, waited for at most ``timeout_s``; a row
    that takes longer fails with ``deadline_exceeded`` (its thread is left to finish)."""
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        future.cancel()
        return RowError(
            "prepare",
            DeadlineExceeded.code,
            f"reading, decoding and tokenising took over {timeout_s} s",
        )


def read_image(base: Path, relative: str, max_image_bytes: int) -> bytes | RowError:
    """The image file's bytes, or why it cannot be read."""
    path = base / relative
    try:
        size = path.stat().st_size
        if size > max_image_bytes:
            return RowError(
                "read", PayloadTooLarge.code, f"image file is over {max_image_bytes} bytes"
            )
        return path.read_bytes()
    except FileNotFoundError:
        return RowError("read", IMAGE_NOT_FOUND, f"no image file at {relative}")
    except OSError as exc:
        return RowError("read", IMAGE_UNREADABLE, f"cannot read {relative}: {exc.strerror}")


def score_items(
    engine: Engine,
    columns: AnswerColumns,
    ids: Sequence[str],
    items: Sequence[PreparedItem],
) -> list[dict[str, Any]]:
    """The output records of prepared rows (``ids[i]`` is ``items[i]``'s id) run as one
    batch; if the batch fails, each item alone, so only the rows that fail get errors."""
    manifest = engine.bundle.manifest
    try:
        results = engine.pipeline.run_items(items)
    except Exception as exc:
        if len(items) > 1:
            return [
                record
                for row_id, item in zip(ids, items, strict=True)
                for record in score_items(engine, columns, [row_id], [item])
            ]
        return [error_record(ids[0], _model_error(exc))]
    return [
        answer_record(row_id, result, item.missing, manifest, columns)
        for row_id, item, result in zip(ids, items, results, strict=True)
    ]


def _model_error(exc: Exception) -> RowError:
    if isinstance(exc, RequestError):
        return RowError("model", exc.code, exc.message)
    return RowError("model", InferenceFailed.code, f"the model failed: {type(exc).__name__}")
