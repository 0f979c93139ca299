"""The rows of a scoring job, shard after shard: each row's image file read, the request
policy applied, the image decoded and the text tokenised in a thread pool, a bounded window of
rows ahead of the model that runs on across shard boundaries (the next shard is read and
prepared while this one's last batches run and while it is written); the accepted rows of a
shard run through the model in batches of ``max_batch_size`` (a batch never mixes shards, so
a shard's answers do not depend on where a run started). Any failure is that row's error row,
with the stage and the code the service would answer."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.classification import ClassifyInput
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine
from app.errors import DeadlineExceeded, InferenceFailed, PayloadTooLarge, RequestError
from app.scoring.score_answers import AnswerColumns, RowError, answer_record, error_record
from app.scoring.score_input import InputRow

IMAGE_NOT_FOUND = "image_not_found"
IMAGE_UNREADABLE = "image_unreadable"
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class RowLimits:
    """What the work in flight may hold: ``max_batch_size`` rows per model call, ``window``
    rows being prepared or waiting for the model at once, image files up to
    ``max_image_bytes``; and how long the model's side waits for a row's preparation
    (``prepare_timeout_s``) before that row fails with ``deadline_exceeded``."""

    max_batch_size: int
    window: int
    max_image_bytes: int
    prepare_timeout_s: float


def window_rows(max_batch_size: int, workers: int) -> int:
    """Rows kept in preparation ahead of the model: the batch being run, the next one, and
    one per preparing thread, as the in-process limit's harness keeps (enough that the model
    never waits for a decode while the cores are shared; a bounded number of decoded images
    in memory)."""
    return 2 * max_batch_size + workers


@dataclass
class _Shard:
    """A shard being scored: its rows, the records found so far, the accepted rows waiting
    for a full batch."""

    index: int
    rows: Sequence[InputRow]
    records: list[dict[str, Any] | None]
    batch: list[tuple[int, PreparedItem]] = field(default_factory=list)


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

    def score_shards(
        self, shards: Iterable[tuple[int, Sequence[InputRow]]]
    ) -> Generator[tuple[int, list[dict[str, Any]]], None, None]:
        """Each shard's index and records (one per row, in the rows' order) as soon as its
        last batch has run. ``shards`` is read lazily, a row at a time as the window frees a
        place, so while the caller handles a shard the rows after it are being prepared.
        Closing the iterator cancels the preparations not yet started."""
        pending: deque[tuple[_Shard, int, Future[PreparedItem | RowError]]] = deque()
        try:
            for shard, position in _positions(shards):
                future = self.pool.submit(self._prepare, shard.rows[position])
                pending.append((shard, position, future))
                if len(pending) >= self.limits.window and (done := self._take(pending)):
                    yield done
            while pending:
                if done := self._take(pending):
                    yield done
        finally:
            for _, _, future in pending:
                future.cancel()

    def _take(
        self, pending: deque[tuple[_Shard, int, Future[PreparedItem | RowError]]]
    ) -> tuple[int, list[dict[str, Any]]] | None:
        """Hand the oldest row to its shard's batch (or record its error); a full batch runs.
        Returns the shard's index and records when that row was its last."""
        shard, position, future = pending.popleft()
        outcome = self._outcome(future)
        if isinstance(outcome, RowError):
            shard.records[position] = error_record(shard.rows[position].id, outcome)
        else:
            shard.batch.append((position, outcome))
            if len(shard.batch) >= self.limits.max_batch_size:
                self._flush(shard)
        if position < len(shard.rows) - 1:
            return None
        if shard.batch:
            self._flush(shard)
        return shard.index, [record for record in shard.records if record is not None]

    def _flush(self, shard: _Shard) -> None:
        """Run the shard's waiting rows as one batch."""
        self._run(shard.batch, shard.rows, shard.records)
        shard.batch.clear()

    def _outcome(self, future: Future[PreparedItem | RowError]) -> PreparedItem | RowError:
        """The row's preparation, waited for at most ``prepare_timeout_s``."""
        try:
            return future.result(timeout=self.limits.prepare_timeout_s)
        except FutureTimeout:
            future.cancel()
            return RowError(
                "prepare",
                DeadlineExceeded.code,
                f"reading, decoding and tokenising took over {self.limits.prepare_timeout_s} s",
            )

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


def _positions(
    shards: Iterable[tuple[int, Sequence[InputRow]]],
) -> Iterator[tuple[_Shard, int]]:
    """Every row of every non-empty shard, as its shard and its position in it."""
    for index, rows in shards:
        shard = _Shard(index, rows, [None] * len(rows))
        for position in range(len(rows)):
            yield shard, position


def _model_error(exc: Exception) -> RowError:
    if isinstance(exc, RequestError):
        return RowError("model", exc.code, exc.message)
    return RowError("model", InferenceFailed.code, f"the model failed: {type(exc).__name__}")
