"""The rows of a scoring job, shard after shard: each row's image file read, the request
policy applied, the image decoded and the text tokenised in a thread pool, a bounded window of
rows ahead of the model that runs on across shard boundaries (the next shard is read and
prepared while this one's last batches run and while it is written); the accepted rows of a
shard run through the model in batches of ``max_batch_size`` (a batch never mixes shards, so
a shard's answers do not depend on where a run started). Both steps are
``app.scoring.score_steps``'s: any failure is that row's error row, with the stage and the code
the service would answer."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine
from app.scoring.score_answers import AnswerColumns, RowError, error_record
from app.scoring.score_input import InputRow
from app.scoring.score_steps import prepare_row, prepared_within, score_items


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
        self.preparer = engine.preparer
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
        outcome = prepared_within(future, self.limits.prepare_timeout_s)
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

    def _prepare(self, row: InputRow) -> PreparedItem | RowError:
        return prepare_row(self.preparer, self.base, row, self.limits.max_image_bytes)

    def _run(
        self,
        batch: Sequence[tuple[int, PreparedItem]],
        rows: Sequence[InputRow],
        records: list[dict[str, Any] | None],
    ) -> None:
        """Run one batch and record its rows' answers."""
        ids = [rows[position].id for position, _ in batch]
        found = score_items(self.engine, self.columns, ids, [item for _, item in batch])
        for (position, _), record in zip(batch, found, strict=True):
            records[position] = record


def _positions(
    shards: Iterable[tuple[int, Sequence[InputRow]]],
) -> Iterator[tuple[_Shard, int]]:
    """Every row of every non-empty shard, as its shard and its position in it."""
    for index, rows in shards:
        shard = _Shard(index, rows, [None] * len(rows))
        for position in range(len(rows)):
            yield shard, position
