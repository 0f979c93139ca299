"""The writing stage of a scoring job: each scored shard built into a Parquet table and
committed (``ScoreOutput.write_shard``) in a thread of its own, while the job scores the next
shard. At most one shard is being written at a time, so at most one scored shard waits in
memory; each commit's counts go to a callback (progress, the error rate) in the order the shards
were submitted, on the caller's thread."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any

import pyarrow as pa

from app.scoring.score_errors import ScoreError
from app.scoring.score_output import ScoreOutput, ShardCounts


class ShardWriter:
    """Commits shards in the background, one at a time; a context manager. ``submit`` waits
    for the previous shard's commit (at most ``deadline_s``), hands its counts to
    ``committed``, then starts writing the new one; leaving the block waits for the last.
    A failed write raises on the caller's thread (at the next ``submit`` or on leaving)."""

    def __init__(
        self,
        output: ScoreOutput,
        schema: pa.Schema,
        committed: Callable[[ShardCounts], None],
        deadline_s: float,
    ) -> None:
        self.output = output
        self.schema = schema
        self.committed = committed
        self.deadline_s = deadline_s
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="score-write")
        self._writing: tuple[int, Future[ShardCounts]] | None = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self.finish()
            else:
                self._settle()
        finally:
            self._thread.shutdown(wait=False, cancel_futures=True)

    def submit(self, index: int, records: list[dict[str, Any]]) -> None:
        """Write and commit shard ``index`` (its records in order) once the shard before it
        is committed."""
        self.finish()
        self._writing = (index, self._thread.submit(self._write, index, records))

    def submit_table(self, index: int, table: pa.Table) -> None:
        """``submit`` for a shard already built as a table holding the output's columns (in
        its rows' order; other columns are dropped)."""
        self.finish()
        shard = table.select(self.schema.names).cast(self.schema)
        self._writing = (index, self._thread.submit(self.output.write_shard, index, shard))

    def finish(self) -> None:
        """Wait for the shard being written (if any) and report its counts."""
        if self._writing is None:
            return
        index, future = self._writing
        self._writing = None
        try:
            counts = future.result(timeout=self.deadline_s)
        except FutureTimeout:
            raise ScoreError(
                f"shard {index} was not written within {self.deadline_s:g} s; the shards "
                "committed before it stay committed"
            ) from None
        self.committed(counts)

    def _settle(self) -> None:
        """On the way out of a failed job: let a write under way end (its shard is whole),
        within the deadline, without raising over the job's own error."""
        if self._writing is None:
            return
        _, future = self._writing
        self._writing = None
        with contextlib.suppress(Exception):  # the job's own error is the one to report
            future.result(timeout=self.deadline_s)

    def _write(self, index: int, records: list[dict[str, Any]]) -> ShardCounts:
        table = pa.Table.from_pylist(records, schema=self.schema)
        return self.output.write_shard(index, table)
