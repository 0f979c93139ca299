"""Dynamic batching: gather concurrent requests into one model call, without idle delay.

Design (after Ray Serve's and infinity's batchers, avoiding their known failure modes):

- One batcher for the whole pipeline (both encoders and the head in one executor call), not
  one per stage. Measured on the default bundle (2 cores, ORT 2 threads, quiet machine): the
  image encoder costs 6.0 ms/item at batch 1 and 4.7-4.9 at batch 4-16, the text encoder
  3.4 ms/item at batch 1 and 2.0 at batch 16, the head 0.03 ms. Both encoders gain from the
  same batch, and on a CPU they share the same cores, so per-stage batchers running
  concurrently would only contend; one call per batch keeps each request's path and failure
  handling in one place. (Repeated texts skip the text encoder through its cache.)
- A lone request is dispatched at once. While a batch runs, new requests queue up; the next
  batch takes everything queued (up to ``max_batch_size``). So batches grow only when the
  model is busy. ``max_wait_s`` (default 0) may hold a non-full batch open a little longer.
- The queue holds only admitted items, so admission's ceiling on items in flight bounds it
  (``app.core.admission``); the batcher has no second limit of its own.
- Each request carries a deadline. One that expires while queued is answered
  ``DeadlineExceeded`` (504) and never computed; a submitter never waits past its deadline.
- Futures are created and resolved on the event loop thread only, and only if not yet done
  (the submitter may have timed out or been cancelled), so each is resolved exactly once.
- If a batch fails, its items are retried one by one so that only the bad item fails.
- The worker loop survives every error; ``stop()`` answers everything still queued.
- An optional observer hears each batch's queue waits, size and run time (for metrics). An
  item's own log lines are emitted in its submitter's context, so they carry its request id.
- A fast model's batches run on the event loop itself (``inline_max_s`` > 0: the runner
  decides from its warm-up, ``app.core.model_runner``): where a batch costs less than the
  hand-off to the executor's thread and back, and than the GIL contention between the two
  threads, running it in place is cheaper and gives the same answers (tiny bundle, 64
  clients, bench/results/request-overhead.json: in the pool a batch of 8 took ~8 ms, the
  thread mostly waiting for the GIL the loop held; on the loop ~0.23 ms). The loop is
  yielded after each such batch. Inline batches are timed (a running mean from the
  warm-up's time); once the mean passes twice ``inline_max_s`` the batcher goes back to
  the executor for good.
- Priorities: each item has a level (0 the most urgent, ``levels`` of them). A batch takes the
  most urgent items first, in arrival order within a level; an item that has waited
  ``aging_s`` counts as most urgent, so no level starves behind a stream of urgent ones for
  longer than that (then its deadline answers it, as any item's).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opentelemetry import context as trace_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, Tracer

from app.core.observer import BatchObserver, NullObserver
from app.errors import DeadlineExceeded, InferenceFailed, RequestError, ShuttingDown

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

INLINE_WEIGHT = 0.1  # of the newest inline batch in the running mean (about the last 20)

Clock = Callable[[], float]


@dataclass
class BatchStats:
    """Counters for observability and tests."""

    batches: int = 0
    items: int = 0
    expired: int = 0
    skipped: int = 0
    failed_batches: int = 0
    sizes: collections.Counter[int] = field(default_factory=collections.Counter)


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    deadline: float
    submitted: float
    context: contextvars.Context
    level: int = 0
    # With tracing: the submitter's span and the wall-clock submission (OTel wants epoch ns).
    span: SpanContext | None = None
    submitted_ns: int = 0


class Batcher(Generic[T, R]):
    """Runs ``run_batch`` (a blocking function: list of items -> one result per item, in
    order) in ``executor`` on batches of submitted items."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        executor: Executor | None,
        max_batch_size: int,
        max_wait_s: float = 0.0,
        clock: Clock = time.monotonic,
        observer: BatchObserver | None = None,
        levels: int = 1,
        aging_s: float = float("inf"),
        tracer: Tracer | None = None,
        inline_max_s: float = 0.0,
        inline_seed_s: float | None = None,
    ) -> None:
        """``inline_max_s`` > 0: run batches on the event loop while they take at most twice
        that on average, starting from ``inline_seed_s`` (by default ``inline_max_s``)."""
        if max_batch_size < 1 or max_wait_s < 0 or levels < 1 or aging_s < 0 or inline_max_s < 0:
            raise ValueError(
                "max_batch_size, levels >= 1 and max_wait_s, aging_s, inline_max_s >= 0"
            )
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._observer = observer or NullObserver()
        self._queues: list[collections.deque[_Pending[T, R]]] = [
            collections.deque() for _ in range(levels)
        ]
        self.aging_s = aging_s
        self._tracer = tracer
        self._inline_max_s = inline_max_s
        self.inline_mean_s = inline_max_s if inline_seed_s is None else inline_seed_s
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = BatchStats()

    @property
    def queue_depth(self) -> int:
        return sum(len(queue) for queue in self._queues)

    @property
    def levels(self) -> int:
        return len(self._queues)

    @property
    def inline(self) -> bool:
        """Batches run on the event loop (see the module's docstring)."""
        return self._inline_max_s > 0

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, item: T, timeout_s: float, level: int = 0) -> R:
        """Queue one prepared item at priority ``level`` (0 the most urgent) and wait for its
        result, at most ``timeout_s`` seconds. The queue is not bounded here: what reaches
        it was admitted (``app.core.admission``), whose ceiling on items in flight bounds it.
        ``ShuttingDown`` once ``stop`` has begun (the owner stops the batcher only when
        nothing admitted is left)."""
        if self._closing or self._worker is None:
            raise ShuttingDown("the service is shutting down")
        if not 0 <= level < len(self._queues):
            raise ValueError(f"level {level} of {len(self._queues)}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        now = self._clock()
        context = contextvars.copy_context()
        pending = _Pending(item, future, now + timeout_s, now, context, level)
        if self._tracer is not None:
            pending.span = trace.get_current_span().get_span_context()
            pending.submitted_ns = time.time_ns()
        self._queues[level].append(pending)
        self._wakeup.set()
        # The deadline as one timer on the loop (no waiter task or future as wait_for makes):
        # it fails the future unless a result came first; a submitter that is cancelled
        # cancels the future, which the batcher then skips.
        expiry = loop.call_later(max(timeout_s, 0.0), _expire, future, timeout_s)
        try:
            return await future
        finally:
            expiry.cancel()

    async def stop(self) -> None:
        """Stop taking work, finish what is queued, then end the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker

    async def _loop(self) -> None:
        while True:
            if not self.queue_depth:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            if batch:
                try:
                    now = self._clock()
                    self._observer.batch_started([now - p.submitted for p in batch])
                    self._trace_queue_waits(batch)
                    inline = self.inline
                    await self._dispatch(batch)
                    if inline:  # the batch ran without a wait: let the submitters move
                        await asyncio.sleep(0)
                except Exception:  # the loop must outlive any error; futures are failed below
                    logger.exception("batch dispatch failed")
                    for pending in batch:
                        _fail(pending, InferenceFailed("inference failed"))

    async def _collect(self) -> list[_Pending[T, R]]:
        """Take live items from the queue, waiting up to ``max_wait_s`` to fill the batch."""
        batch = self._take([])
        if self.max_wait_s > 0 and len(batch) < self.max_batch_size and not self._closing:
            loop = asyncio.get_running_loop()
            until = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch_size and (left := until - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=left)
                except TimeoutError:
                    break
                batch = self._take(batch)
        return batch

    def _take(self, batch: list[_Pending[T, R]]) -> list[_Pending[T, R]]:
        now = self._clock()
        while len(batch) < self.max_batch_size and (queue := self._next_queue(now)) is not None:
            pending = queue.popleft()
            if self._live(pending, now):
                batch.append(pending)
        return batch

    def _next_queue(self, now: float) -> collections.deque[_Pending[T, R]] | None:
        """The queue whose head goes next: the most urgent level's, unless a less urgent
        head has waited ``aging_s``, which then counts as most urgent (oldest first)."""
        best: collections.deque[_Pending[T, R]] | None = None
        best_key = (0, 0.0)
        for queue in self._queues:
            if not queue:
                continue
            head = queue[0]
            level = 0 if now - head.submitted >= self.aging_s else head.level
            key = (level, head.submitted)
            if best is None or key < best_key:
                best, best_key = queue, key
        return best

    def _live(self, pending: _Pending[T, R], now: float) -> bool:
        """False, after settling it, for an item not worth computing any more."""
        if pending.future.done():  # the submitter gave up (timeout, disconnect)
            self.stats.skipped += 1
            return False
        if pending.deadline <= now:
            self.stats.expired += 1
            _fail(pending, DeadlineExceeded("the request expired while queued"))
            return False
        return True

    def _trace_queue_waits(self, batch: list[_Pending[T, R]]) -> None:
        """A ``queue_wait`` span per item, under its request's span: submission to now."""
        if self._tracer is None:
            return
        now_ns = time.time_ns()
        for pending in batch:
            if pending.span is not None:
                parent = trace.set_span_in_context(NonRecordingSpan(pending.span))
                span = self._tracer.start_span(
                    "queue_wait", context=parent, start_time=pending.submitted_ns
                )
                span.end(end_time=now_ns)

    def _batch_span(self, batch: list[_Pending[T, R]]) -> trace.Span | None:
        """The ``batch`` span: a child of the first item's request, linked to every item's."""
        if self._tracer is None:
            return None
        spans = [p.span for p in batch if p.span is not None and p.span.is_valid]
        parent = trace.set_span_in_context(NonRecordingSpan(spans[0])) if spans else None
        return self._tracer.start_span(
            "batch",
            context=parent,
            links=[Link(span) for span in spans],
            attributes={"batch.size": len(batch)},
        )

    async def _execute(self, batch: list[_Pending[T, R]]) -> Sequence[R]:
        """Run the batch on the event loop or in the executor, under its ``batch`` span when
        tracing (the models' spans nest under it)."""
        items = [p.item for p in batch]
        span = self._batch_span(batch)
        run: Callable[[list[T]], Sequence[R]] = self._run_batch
        if span is not None:
            in_span = contextvars.copy_context()
            in_span.run(trace_context.attach, trace.set_span_in_context(span))

            def run_in_span(batch_items: list[T]) -> Sequence[R]:
                return in_span.run(self._run_batch, batch_items)

            run = run_in_span
        try:
            if self.inline:
                return self._run_inline(run, items)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, run, items)
        except Exception as exc:
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            if span is not None:
                span.end()

    def _run_inline(self, run: Callable[[list[T]], Sequence[R]], items: list[T]) -> Sequence[R]:
        """``run(items)`` here, timed: a running mean over twice ``inline_max_s`` sends the
        next batches to the executor."""
        started = self._clock()
        try:
            return run(items)
        finally:
            run_s = self._clock() - started
            self.inline_mean_s += INLINE_WEIGHT * (run_s - self.inline_mean_s)
            if self.inline_mean_s > 2 * self._inline_max_s:
                logger.info(
                    "batches took %.2f ms on average on the event loop, over twice the %.2f ms "
                    "they may take there: they run in the inference pool from now on",
                    self.inline_mean_s * 1000,
                    self._inline_max_s * 1000,
                )
                self._inline_max_s = 0.0

    async def _dispatch(self, batch: list[_Pending[T, R]]) -> None:
        started = self._clock()
        try:
            results = await self._execute(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception:
            self.stats.failed_batches += 1
            if len(batch) == 1:
                batch[0].context.run(logger.exception, "inference failed for one item")
                _fail(batch[0], InferenceFailed("inference failed for this request"))
                return
            logger.warning("batch of %d failed; retrying its items one by one", len(batch))
            for pending in batch:
                # Checked again: a submitter may have left while the failed batch ran.
                if self._live(pending, self._clock()):
                    await self._dispatch([pending])
            return
        run_s = self._clock() - started
        self.stats.batches += 1
        self.stats.items += len(batch)
        self.stats.sizes[len(batch)] += 1
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
        self._observer.batch_finished(len(batch), run_s)


def _expire(future: asyncio.Future[R], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded(f"no result within {timeout_s:g} s"))


def _fail(pending: _Pending[T, R], error: RequestError) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
