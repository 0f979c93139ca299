"""One shard of a scoring job: each row's image file read, the request policy applied, the
image decoded and the text tokenised in a thread pool (a bounded window of rows in flight),
then the accepted rows run through the model in batches of ``max_batch_size``. Any failure
is that row's error row, with the stage and the code the service would answer."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.classification import ClassifyInput
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine
from app.errors import InferenceFailed, PayloadTooLarge, RequestError
from app.scoring.score_answers import AnswerColumns, RowError, answer_record, error_record
from app.scoring.score_input import InputRow

IMAGE_NOT_FOUND = "image_not_found"
IMAGE_UNREADABLE = "image_unreadable"
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class RowLimits:
    """What a shard's work may hold: ``max_batch_size`` rows per model call, ``window`` rows
    being prepared at once, image files up to ``max_image_bytes``."""

    max_batch_size: int
    window: int
    max_image_bytes: int


class RowScorer:
    """Scores shards of rows with one engine; images are read relative to ``base``."""

    def __init__(
        self,
        engine: Engine,
        base: Path,
        columns: AnswerColumns,
        limits: RowLimits,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.engine = engine
        self.base = base
        self.columns = columns
        self.limits = limits
        self.pool = pool

    def score(self, rows: Sequence[InputRow]) -> list[dict[str, Any]]:
        """One output record per row, in the rows' order."""
        records: list[dict[str, Any] | None] = [None] * len(rows)
        pending: deque[tuple[int, Future[PreparedItem | RowError]]] = deque()
        batch: list[tuple[int, PreparedItem]] = []

        def take_one() -> None:
            position, future = pending.popleft()
            outcome = future.result()
            if isinstance(outcome, RowError):
                records[position] = error_record(rows[position].id, outcome)
                return
            batch.append((position, outcome))
            if len(batch) >= self.limits.max_batch_size:
                self._run(batch, rows, records)
                batch.clear()

        for position, row in enumerate(rows):
            pending.append((position, self.pool.submit(self._prepare, row)))
            if len(pending) >= self.limits.window:
                take_one()
        while pending:
            take_one()
        if batch:
            self._run(batch, rows, records)
        return [record for record in records if record is not None]

    def _prepare(self, row: InputRow) -> PreparedItem | RowError:
        """The row read, checked, decoded and tokenised, or the error of the stage that
        failed."""
        stage = "read"
        try:
            image = None if row.image is None else self._read_image(row.image)
            if isinstance(image, RowError):
                return image
            stage = "validate"
            item = self.engine.policy.check(ClassifyInput(image, row.text))
            pipeline = self.engine.pipeline
            stage = "decode"
            decoded = None if item.image is None else pipeline.prepare(item.image, None)
            stage = "tokenise"
            tokenised = None if item.text is None else pipeline.prepare(None, item.text)
        except RequestError as exc:
            return RowError(stage, exc.code, exc.message)
        except Exception as exc:  # a broken row must not end the job: it is recorded
            return RowError(stage, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        return PreparedItem(
            pixels=None if decoded is None else decoded.pixels,
            text=item.text,
            token_ids=None if tokenised is None else tokenised.token_ids,
        )

    def _read_image(self, relative: str) -> bytes | RowError:
        path = self.base / relative
        try:
            size = path.stat().st_size
            if size > self.limits.max_image_bytes:
                return RowError(
                    "read",
                    PayloadTooLarge.code,
                    f"image file is over {self.limits.max_image_bytes} bytes",
                )
            return path.read_bytes()
        except FileNotFoundError:
            return RowError("read", IMAGE_NOT_FOUND, f"no image file at {relative}")
        except OSError as exc:
            return RowError("read", IMAGE_UNREADABLE, f"cannot read {relative}: {exc.strerror}")

    def _run(
        self,
        batch: Sequence[tuple[int, PreparedItem]],
        rows: Sequence[InputRow],
        records: list[dict[str, Any] | None],
    ) -> None:
        """Run one batch; if it fails, each of its items alone (as the service's batcher)."""
        manifest = self.engine.bundle.manifest
        items = [item for _, item in batch]
        try:
            results = self.engine.pipeline.run_items(items)
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:
                    self._run([one], rows, records)
                return
            position = batch[0][0]
            error = _model_error(exc)
            records[position] = error_record(rows[position].id, error)
            return
        for (position, item), result in zip(batch, results, strict=True):
            records[position] = answer_record(
                rows[position].id, result, item.missing, manifest, self.columns
            )


def _model_error(exc: Exception) -> RowError:
    if isinstance(exc, RequestError):
        return RowError("model", exc.code, exc.message)
    return RowError("model", InferenceFailed.code, f"the model failed: {type(exc).__name__}")
