"""Metrics of a pod of worker processes: one scrape gives the pod's totals, whichever worker
answers it.

Each worker's counters and histograms go to prometheus-client's multiprocess files (the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` for the workers before they start, so that
prometheus-client stores values there from its first import); a scrape merges every
worker's files (``MultiProcessCollector``), a worker that has died counting on in the
counters and dropping out of the live gauges. What a single process reads at scrape time
(``app.observability.state_metrics.STATE_METRICS``: readiness, queue, in flight, memory
budgets...) each worker writes into gauges, combined as each metric says (summed, the least, the
most), or adds to
counters by their increase: on every scrape it answers and every ``REFRESH_S`` seconds, so
the other workers' share is at most that old.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from app.core.serving_core import ServingCore
from app.observability.state_metrics import STATE_METRICS, state_values

REFRESH_S = 1.0


class PodState:
    """One worker's ``STATE_METRICS``, written where every worker's are merged."""

    def __init__(self, core: ServingCore, directory: Path) -> None:
        self._core = core
        self.directory = directory
        self._gauges: dict[str, Gauge] = {}
        self._counters: dict[str, Counter] = {}
        self._reported: dict[tuple[str, tuple[str, ...]], float] = {}
        self._shown: dict[str, set[tuple[str, ...]]] = {m.name: set() for m in STATE_METRICS}
        for metric in STATE_METRICS:
            labels = list(metric.labels)
            if metric.counter:
                self._counters[metric.name] = Counter(
                    metric.name, metric.documentation, labels, registry=None
                )
            else:
                self._gauges[metric.name] = Gauge(
                    metric.name,
                    metric.documentation,
                    labels,
                    registry=None,
                    multiprocess_mode=metric.pod_mode,
                )

    def refresh(self) -> None:
        """Write this worker's values now."""
        for name, samples in state_values(self._core).items():
            seen = set()
            for labels, value in samples:
                seen.add(labels)
                if name in self._counters:
                    counter = self._counters[name]
                    key = (name, labels)
                    increase = value - self._reported.get(key, 0.0)
                    if increase > 0:
                        (counter.labels(*labels) if labels else counter).inc(increase)
                        self._reported[key] = value
                    continue
                gauge = self._gauges[name]
                (gauge.labels(*labels) if labels else gauge).set(value)
            if name in self._gauges:
                # A label set this worker no longer has (a bundle's old version): 0, not stale.
                for gone in self._shown[name] - seen:
                    self._gauges[name].labels(*gone).set(0)
            self._shown[name] = seen

    def render(self) -> bytes:
        """The pod's metrics, this worker's share refreshed first."""
        self.refresh()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    async def keep_fresh(self) -> None:
        """Refresh every ``REFRESH_S`` seconds until cancelled."""
        while True:
            self.refresh()
            await asyncio.sleep(REFRESH_S)
