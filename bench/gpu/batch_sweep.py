"""(d) The batch-size sweep, in-process: the fp32 default bundle's engine
(``app.core.engine.build_engine``) on the plan's device, its text cache off, and ``Pipeline.run``
timed on batches of each size of prepared real-photo requests (decoded once, beforehand, on
the CPU: the models alone are timed). Items/s and ms per batch; the recommended GPU default
is the smallest batch size within ``SWEEP_FRACTION`` of the best items/s (bigger batches
only add latency for less than that)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import build_engine
from bench.gpu.plan import DEPLOYED_MAX_BATCH_SIZE, SWEEP_FRACTION, Plan
from bench.harness.payloads import build_requests
from bench.harness.statistics import median


class SweepRow(TypedDict):
    batch_size: int
    batches: int
    items_per_s: float
    ms_per_batch: float


def recommend_batch_size(rows: Sequence[SweepRow], fraction: float = SWEEP_FRACTION) -> int:
    """The smallest batch size whose items/s is at least ``fraction`` of the best's."""
    if not rows:
        raise ValueError("no batch size was measured")
    best = max(row["items_per_s"] for row in rows)
    return min(row["batch_size"] for row in rows if row["items_per_s"] >= fraction * best)


Run = Callable[[Sequence[PreparedItem]], object]


def time_batches(run: Run, items: Sequence[PreparedItem], seconds: float) -> SweepRow:
    """``run(items)`` repeated for ``seconds`` (at least 3 times) after one untimed call."""
    run(items)
    durations: list[float] = []
    started = time.perf_counter()
    while len(durations) < 3 or time.perf_counter() - started < seconds:
        before = time.perf_counter()
        run(items)
        durations.append(time.perf_counter() - before)
    total = sum(durations)
    return {
        "batch_size": len(items),
        "batches": len(durations),
        "items_per_s": round(len(items) * len(durations) / total, 1),
        "ms_per_batch": median([1000 * d for d in durations]),
    }


def measure_sweep(plan: Plan, logs: Path) -> dict[str, Any]:
    del logs  # in-process: nothing to log beyond the results
    settings = Settings(
        bundle_path=plan.fp32_bundle,
        device=plan.device,
        image_decoder="cpu",
        text_cache_size=0,
    )
    engine = build_engine(settings)
    requests = build_requests()
    largest = max(plan.sweep_batch_sizes)
    items = []
    for index in range(largest):
        image, text = requests.inputs(index)
        items.append(engine.prepare(image, text))
    run = engine.pipeline.run
    rows = [time_batches(run, items[:size], plan.sweep_s) for size in plan.sweep_batch_sizes]
    best = max(rows, key=lambda row: row["items_per_s"])
    return {
        "bundle": "fp32",
        "device": plan.device,
        "providers": engine.providers,
        "io_binding": engine.pipeline.io_bound,
        "seconds_per_size": plan.sweep_s,
        "rows": rows,
        "best_batch_size": best["batch_size"],
        "best_items_per_s": best["items_per_s"],
        "fraction": SWEEP_FRACTION,
        "recommended_batch_size": recommend_batch_size(rows),
        "deployed_batch_size": DEPLOYED_MAX_BATCH_SIZE,
    }
