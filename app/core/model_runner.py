"""One loaded bundle at work: admission, preprocessing off the event loop, the dynamic batcher
and the model's thread pool. It takes items the request policy has checked and answers each
with its probabilities (``app.core.classification``); protocols are the adapters' business."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.trace import Status, StatusCode, Tracer

from app.config.settings import Settings
from app.core.admission import Admission, AdmissionLimits, ItemPace
from app.core.batching import Batcher
from app.core.classification import ClassifiedItem, ClassifyInput, Timings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine
from app.core.lifecycle import Lifecycle
from app.core.observer import NullObserver, ServiceObserver
from app.core.pipeline import ItemResult
from app.errors import (
    DeadlineExceeded,
    InvalidRequest,
    MemoryBusy,
    Overloaded,
    RequestError,
    forget_tracebacks,
)
from app.memory.memory_budget import MemoryBudget, RoomWanted
from app.preprocess.decode_budget import DecodeBudget, TooLate
from app.preprocess.decode_pace import DecodePace
from app.preprocess.image import OpenedImage


class ModelRunner:
    """Runs items through one engine: admission (``app.core.admission``), decode and tokenise (on
    the event loop for small images, else in a thread pool), then the dynamic batcher, which
    runs batches on a separate inference pool so that decoding never queues in front of
    model execution. ``observer`` hears about each item and batch (metrics). ``lifecycle``
    is the service's: nothing is admitted once it stops accepting. ``decode_memory`` is the
    process-wide budget every image decode reserves from, and ``decode_pace`` how fast
    decodes go here (both shared by every runner). ``pace`` is what admission starts from
    (``app.core.admission``: a seed, or the pace of the runner this one replaces).
    ``warm_batch_s``, what the warm-up's full batch took, decides where batches run: on the
    event loop when it is within ``inline_batch_max_ms`` (``app.core.batching``), else in
    the inference pool."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        observer: ServiceObserver | None = None,
        *,
        lifecycle: Lifecycle,
        decode_memory: MemoryBudget,
        decode_pace: DecodePace,
        pace: ItemPace | None = None,
        warm_batch_s: float | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.engine = engine
        self._tracer = tracer
        engine.pipeline.tracer = tracer
        self.decode_memory = decode_memory
        self.decode_pace = decode_pace
        self._observer = observer or NullObserver()
        self.request_timeout_s = settings.request_timeout_s
        self.retry_after_s = settings.retry_after_s
        self.overload_status = settings.overload_status
        self.default_priority = settings.default_priority
        self.inline_decode_max_pixels = settings.inline_decode_max_pixels
        self.pace = pace or ItemPace()
        self.admission = Admission(
            AdmissionLimits(
                max_in_flight=settings.max_in_flight,
                max_queue_wait_s=settings.max_queue_wait_s,
                request_timeout_s=settings.request_timeout_s,
                retry_after_s=settings.retry_after_s,
                overload_status=settings.overload_status,
                priority_levels=settings.priority_levels,
            ),
            self.pace,
            lifecycle,
        )
        self._preprocess_pool = ThreadPoolExecutor(
            settings.preprocess_threads, thread_name_prefix="fusionserve-preprocess"
        )
        self._inference_pool = ThreadPoolExecutor(
            settings.inference_threads, thread_name_prefix="fusionserve-inference"
        )
        inline_max_s = settings.inline_batch_max_ms / 1000.0
        fast = warm_batch_s is not None and warm_batch_s <= inline_max_s
        self.batcher: Batcher[PreparedItem, ItemResult] = Batcher(
            self._run_batch,
            executor=self._inference_pool,
            inline_max_s=inline_max_s if fast else 0.0,
            inline_seed_s=warm_batch_s,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000.0,
            levels=settings.priority_levels,
            aging_s=settings.max_queue_wait_s,
            tracer=tracer,
            observer=self._observer,
        )
        self.stopped = False  # stop() has finished: batcher and threads released
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        """Items accepted and not yet answered."""
        return self.admission.in_flight

    def stats(self) -> dict[str, Any]:
        """Batcher and text-cache counters, for /info (Prometheus metrics:
        app.observability.metrics)."""
        batch = self.batcher.stats
        cache = self.engine.pipeline.text_cache
        return {
            "queue_depth": self.batcher.queue_depth,
            "in_flight": self.admission.in_flight,
            "item_ms": None if self.pace.item_s is None else round(self.pace.item_s * 1000, 3),
            "batches_inline": self.batcher.inline,
            "batches": batch.batches,
            "items": batch.items,
            "batch_sizes": dict(sorted(batch.sizes.items())),
            "expired": batch.expired,
            "skipped": batch.skipped,
            "rejected": self.admission.rejected,
            "failed_batches": batch.failed_batches,
            "text_cache": {
                "size": len(cache),
                "capacity": cache.capacity,
                "hits": cache.hits,
                "misses": cache.misses,
            },
        }

    def _run_batch(self, items: list[PreparedItem]) -> list[ItemResult]:
        return self.engine.pipeline.run_items(items)  # one result per item

    def start(self) -> None:
        """Start the batcher; call on the event loop that will serve requests."""
        self.batcher.start()

    def refusal(self, items: int = 1) -> RequestError | None:
        """Why ``items`` more items would be refused now, or None if they would be admitted.
        Counts the refusal: callers answer it."""
        return self.admission.refusal(items)

    @contextlib.contextmanager
    def _accepted(self, items: int, level: int = 0) -> Iterator[None]:
        """Admit ``items`` or refuse at once; admitted items count as in flight until
        answered, so that ``stop()`` waits for them. Admission happens before decoding, so
        nothing queues without bound in front of the decode pool either."""
        refusal = self._admit(items, level)
        if refusal is not None:
            try:
                raise refusal
            finally:
                # Not left in this frame, which the refusal's traceback holds: the pair
                # would be a reference cycle keeping the request's data (megabytes of
                # body and image) until the cyclic collector runs.
                del refusal
        self.admission.admit(items)
        self._idle.clear()
        try:
            yield
        finally:
            self.admission.release(items)
            if self.admission.in_flight == 0:
                self._idle.set()

    def _admit(self, items: int, level: int) -> RequestError | None:
        """Admission's answer, traced as the ``admission`` span."""
        if self._tracer is None:
            return self.admission.refusal(items, level)
        attributes = {"items": items, "priority": level + 1}
        with self._tracer.start_as_current_span("admission", attributes=attributes) as span:
            refusal = self.admission.refusal(items, level)
            if refusal is not None:
                span.set_status(Status(StatusCode.ERROR, refusal.code))
            return refusal

    @contextlib.contextmanager
    def _span(self, name: str) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(name):
            yield

    async def classify(
        self, items: Sequence[ClassifyInput], priority: int | None = None
    ) -> list[ClassifiedItem | RequestError]:
        """Admit every item at ``priority`` or refuse the whole request (raises); then each
        item is checked, prepared and classified through the batcher on its own, and fails or
        succeeds alone."""
        level = self.level(priority)
        with self._accepted(len(items), level):
            if len(items) == 1:  # the common case, without a task per item
                return [await self._classify_caught(items[0], level)]
            answers = (self._classify_caught(item, level) for item in items)
            return list(await asyncio.gather(*answers))

    def level(self, priority: int | None) -> int:
        """The batcher's and admission's level (0 the most urgent) of a request's
        ``priority`` (1 the most urgent; 0 or None: the default); 422 out of range."""
        levels = self.batcher.levels
        if priority is None or priority == 0:
            return self.default_priority - 1
        if not 1 <= priority <= levels:
            raise InvalidRequest(f"priority must be 0 (the default) or 1 to {levels}")
        return priority - 1

    async def _classify_caught(
        self, item: ClassifyInput, level: int
    ) -> ClassifiedItem | RequestError:
        try:
            return await self._classify(item, level)
        except RequestError as error:  # the item's outcome: its traceback is not needed
            forget_tracebacks(error)
            return error

    async def _classify(self, given: ClassifyInput, level: int) -> ClassifiedItem:
        started = time.perf_counter()
        item = self.engine.policy.check(given)
        with self._span("preprocess"):
            prepared_item = await self._prepare(item.image, item.text, item.explain, started)
        prepared = time.perf_counter()
        self._observer.preprocessed(prepared - started)
        result = await self.batcher.submit(prepared_item, self._left(started), level)
        answered = ClassifiedItem(
            probabilities=result.probabilities,
            missing=prepared_item.missing,
            timings=Timings(prepared - started, time.perf_counter() - prepared),
            without_image=result.without_image,
            without_text=result.without_text,
        )
        manifest = self.engine.bundle.manifest
        self._observer.predicted(
            [manifest.labels[i] for i in answered.predicted(manifest)],
            float(result.probabilities[answered.top]),
        )
        return answered

    async def _prepare(
        self, image: bytes | None, text: str | None, explain: bool, started: float
    ) -> PreparedItem:
        """Decode and tokenise within the request's deadline (504 past it). The image's
        header is read here, once (a hostile or broken one is refused at once); then the
        item is prepared on the event loop when there is no image or a small one
        (``inline_decode_max_pixels``: the hand-offs to and from the pool would cost more
        than the work), else in the pool. A decode that would end past the deadline (at the
        pace decodes of its format go) is not started: 503. An image whose decode finds no
        room in the decode memory budget is retried once room is seen, the wait holding
        nothing but the request; if no room comes while there is still time to decode it,
        503."""
        decoder = self.engine.pipeline.decoder
        opened = None if image is None else decoder.open(image)
        inline = opened is None or opened.pixels <= self.inline_decode_max_pixels
        budget = DecodeBudget(
            self.decode_memory, self.decode_pace, started + self.request_timeout_s
        )
        while True:
            try:
                if inline:
                    return self._prepare_now(opened, text, explain, budget)
                return await self._prepare_in_pool(opened, text, explain, budget, started)
            except TooLate:
                self.admission.count_refused(1)
                raise Overloaded(
                    "image decoding is backed up: this image would not be decoded before its "
                    "deadline; retry later",
                    headers={"Retry-After": str(self.retry_after_s)},
                    status_code=self.overload_status,
                ) from None
            except RoomWanted as wanted:
                needed, decode_s = wanted.nbytes, wanted.seconds
            memory = self.decode_memory
            time_to_wait = self._left(started) - decode_s
            if time_to_wait <= 0 or not await memory.wait_for_room(needed, time_to_wait):
                self.admission.count_refused(1)
                raise MemoryBusy(
                    "image decoding is using all of its memory budget "
                    f"({memory.capacity // 2**20} MiB); retry later",
                    headers={"Retry-After": str(self.retry_after_s)},
                    status_code=self.overload_status,
                )
            opened = None if image is None else decoder.open(image)  # the try closed it

    def _prepare_now(
        self,
        opened: OpenedImage | None,
        text: str | None,
        explain: bool,
        budget: DecodeBudget,
    ) -> PreparedItem:
        """Prepare the item here and now, closing its image whatever happens."""
        try:
            return self.engine.pipeline.prepare(opened, text, explain, budget)
        finally:
            if opened is not None:
                opened.close()

    async def _prepare_in_pool(
        self,
        opened: OpenedImage | None,
        text: str | None,
        explain: bool,
        budget: DecodeBudget,
        started: float,
    ) -> PreparedItem:
        # The pool's threads do not carry the context over: copy it, so that log lines from
        # decoding (Pillow logs at debug level) carry the request id.
        context = contextvars.copy_context()
        work = self._preprocess_pool.submit(
            context.run, self._prepare_now, opened, text, explain, budget
        )
        try:
            return await asyncio.wait_for(asyncio.wrap_future(work), self._left(started))
        except TimeoutError:
            # Not started yet: cancelled, so its image is closed here. Running: it finishes
            # in its thread (which closes the image) and its result is dropped.
            if work.cancel() and opened is not None:
                opened.close()
            raise DeadlineExceeded("the request expired while its image was decoded") from None

    def _left(self, started: float) -> float:
        """Seconds left of the deadline of a request that started at ``started``."""
        return self.request_timeout_s - (time.perf_counter() - started)

    async def stop(self) -> None:
        """Answer every accepted item (each has its own deadline, so this wait is bounded),
        then stop the batcher and release the threads. Called once nothing new can reach this
        runner: the service stopped accepting, or a reload switched its name to a new one."""
        await self._idle.wait()
        await self.batcher.stop()
        self._preprocess_pool.shutdown(wait=True)
        self._inference_pool.shutdown(wait=True)
        self.stopped = True
