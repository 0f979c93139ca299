"""The metrics read from the serving core at scrape time (readiness, queues, items in flight,
the memory budgets...): what they are and their values now. ``app.observability.metrics`` exposes
them for
one process; ``app.workers.pod_metrics`` gathers them from every worker of a pod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.core.lifecycle import Status
from app.core.registry import ModelStatus
from app.core.serving_core import ServingCore


@dataclass(frozen=True)
class StateMetric:
    """A metric read from the serving core at scrape time: its name, help, labels, kind,
    and how a pod of worker processes combines the workers' values (prometheus-client's
    multiprocess modes, for gauges)."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    counter: bool = False
    pod_mode: Literal["livesum", "livemin", "livemax"] = "livesum"


STATE_METRICS = (
    StateMetric(
        "fusionserve_ready",
        "1 when the service takes requests (every bundle loaded), else 0.",
        pod_mode="livemin",
    ),
    StateMetric(
        "fusionserve_bundle_ready",
        "1 when the bundle serves, else 0.",
        ("bundle",),
        pod_mode="livemin",
    ),
    StateMetric("fusionserve_queue_depth", "Items waiting for a batch.", ("bundle",)),
    StateMetric(
        "fusionserve_in_flight_items",
        "Items accepted and not yet answered (decoding, queued or running).",
        ("bundle",),
    ),
    StateMetric(
        "fusionserve_predicted_wait_seconds",
        "Seconds the items in flight are predicted to take to drain, at the measured busy "
        "time per answered item: admission refuses once it would pass max_queue_wait_s.",
        ("bundle",),
        pod_mode="livemax",
    ),
    StateMetric("fusionserve_text_cache_hits", "Text-cache hits.", ("bundle",), counter=True),
    StateMetric("fusionserve_text_cache_misses", "Text-cache misses.", ("bundle",), counter=True),
    StateMetric(
        "fusionserve_bundle_info",
        "The loaded bundles; always 1.",
        ("bundle", "name", "version"),
        pod_mode="livemax",
    ),
    StateMetric(
        "fusionserve_execution_provider_info",
        "Execution providers each model's session really uses; always 1.",
        ("bundle", "model", "provider"),
        pod_mode="livemax",
    ),
    StateMetric(
        "fusionserve_memory_budget_bytes",
        "Size of each process-wide memory budget: image decodes, request bodies.",
        ("budget",),
    ),
    StateMetric(
        "fusionserve_memory_reserved_bytes",
        "Bytes reserved now from each memory budget.",
        ("budget",),
    ),
    StateMetric(
        "fusionserve_decode_memory_waiting",
        "Requests waiting for room in the decode memory budget.",
    ),
)

StateValues = dict[str, list[tuple[tuple[str, ...], float]]]


def state_values(core: ServingCore) -> StateValues:
    """Every ``STATE_METRICS`` metric's samples now: (label values, value) each; safe
    before the bundles have loaded."""
    values: StateValues = {metric.name: [] for metric in STATE_METRICS}

    def add(name: str, labels: tuple[str, ...], value: float) -> None:
        values[f"fusionserve_{name}"].append((labels, value))

    add("ready", (), int(core.lifecycle.status is Status.READY))
    for slot in core.registry.slots:
        runner = slot.runner
        add("bundle_ready", (slot.name,), int(slot.status is ModelStatus.READY))
        if runner is None:
            continue
        cache = runner.engine.pipeline.text_cache
        # A version draining after a reload still holds accepted items: count them.
        versions = slot.runners()
        add("queue_depth", (slot.name,), sum(r.batcher.queue_depth for r in versions))
        add("in_flight_items", (slot.name,), sum(r.in_flight for r in versions))
        add("predicted_wait_seconds", (slot.name,), runner.admission.drain_s())
        add("text_cache_hits", (slot.name,), cache.hits)
        add("text_cache_misses", (slot.name,), cache.misses)
        manifest = runner.engine.bundle.manifest
        add("bundle_info", (slot.name, manifest.name, manifest.version), 1)
        for model, names in runner.engine.providers.items():
            for provider in names:
                add("execution_provider_info", (slot.name, model, provider), 1)
    budgets = {"decode": core.registry.decode_memory, "bodies": core.body_memory}
    for budget_name, budget in budgets.items():
        add("memory_budget_bytes", (budget_name,), budget.capacity)
        add("memory_reserved_bytes", (budget_name,), budget.used)
    add("decode_memory_waiting", (), core.registry.decode_memory.waiting)
    return values
