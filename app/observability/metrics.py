"""Prometheus metrics, one registry per app. With ``app.workers.pod_metrics`` (a pod of worker
processes), the only module that uses prometheus_client.

Counters and histograms are fed through plain hooks (``ServiceObserver``, the HTTP metrics
middleware, the error listener); gauges, info metrics and the text-cache counters are read
from the serving core at scrape time. Every metric is described in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app import __version__
from app.core.observer import ServiceObserver
from app.core.serving_core import ServingCore
from app.errors import (
    ClientDisconnected,
    DeadlineExceeded,
    MemoryBusy,
    NotReady,
    Overloaded,
    RequestError,
    ShuttingDown,
)
from app.observability.state_metrics import STATE_METRICS, state_values


class PodScrape(Protocol):
    """A pod's metrics, rendered for a scrape (``app.workers.pod_metrics.PodState``)."""

    def render(self) -> bytes: ...


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024, max_batch_size's cap
PROBABILITY_BUCKETS = tuple(i / 10 for i in range(1, 11))  # 0.1 .. 1.0
# Methods outside this set are counted as "other", so clients cannot grow the label set.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REJECTION_REASONS: dict[type[RequestError], str] = {
    MemoryBusy: "memory_busy",  # before Overloaded, its base class
    Overloaded: "overloaded",
    ShuttingDown: "shutting_down",
    NotReady: "not_ready",
    DeadlineExceeded: "deadline_exceeded",
    ClientDisconnected: "client_disconnected",
}


def rejection_reason(error: RequestError) -> str | None:
    """The ``reason`` label for a refusal, or None for other errors."""
    return next((r for kind, r in REJECTION_REASONS.items() if isinstance(error, kind)), None)


class Metrics:
    """The app's metrics. Implements ``app.core.observer.ServiceObserver``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, core: ServingCore, pod_state: PodScrape | None = None) -> None:
        """``pod_state``: in a worker process of several, where this worker's state goes
        for the pod's scrape (``app.workers.pod_metrics``)."""
        self._pod_state = pod_state
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "fusionserve_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "fusionserve_http_request_duration_seconds",
            "Time from receiving a request to the end of its response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.grpc_requests = Counter(
            "fusionserve_grpc_requests",
            "gRPC calls answered (the Open Inference Protocol), by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.grpc_duration = Histogram(
            "fusionserve_grpc_request_duration_seconds",
            "Time from receiving a gRPC call to its answer.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.preprocess = _latency("preprocess", "Decoding and tokenising one item.", registry)
        self.queue_wait = _latency(
            "queue_wait", "One item's wait from submission to the start of its batch.", registry
        )
        self.inference = _latency("inference", "Running one batch through the models.", registry)
        self.batch_size = Histogram(
            "fusionserve_batch_size",
            "Items per batch that ran successfully.",
            ["bundle"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.rejected = Counter(
            "fusionserve_rejected",
            "Requests (or items of /classify/batch) refused or abandoned, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REJECTION_REASONS.values():
            self.rejected.labels(reason)
        self.top1 = Histogram(
            "fusionserve_top1_probability",
            "Probability of the most probable label of each classified item.",
            ["bundle"],
            buckets=PROBABILITY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "fusionserve_predictions",
            "Predicted labels, by bundle and label: a multiclass item counts once for its most "
            "probable class, a multilabel item once for each label at or above its threshold.",
            ["bundle", "label"],
            registry=registry,
        )
        self.unlabelled = Counter(
            "fusionserve_unlabelled_items",
            "Classified items of a multilabel bundle that no label reached the threshold of.",
            ["bundle"],
            registry=registry,
        )
        build = Gauge(
            "fusionserve_build_info",
            "Always 1.",
            ["version"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        build.labels(__version__).set(1)
        if pod_state is None:
            registry.register(_StateCollector(core))
            # process_resident_memory_bytes and the rest, to compare with the memory limit;
            # python_gc_collections_total and the rest (setting gc_young_threshold).
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)

    def render(self) -> bytes:
        """The text exposition format: this process's metrics, or the pod's."""
        if self._pod_state is not None:
            return self._pod_state.render()
        return generate_latest(self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        # The labelled children, looked up once each (prometheus_client's labels() checks
        # and locks on every call); routes and methods are bounded sets, statuses nearly.
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(route, method, str(status)),
                self.http_duration.labels(route),
            )
            self._request_children[key] = children
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        self.grpc_requests.labels(method, code).inc()
        self.grpc_duration.labels(method).observe(seconds)

    def count_error(self, error: RequestError) -> None:
        """Count ``error`` if it is a refusal; other errors show in the HTTP status counts."""
        reason = rejection_reason(error)
        if reason is not None:
            self.rejected.labels(reason).inc()

    def observer(self, bundle: str) -> ServiceObserver:
        """The hooks of one bundle's runner and batcher, labelled with its name."""
        return _BundleObserver(self, bundle)


class _BundleObserver:
    """``ServiceObserver`` for one bundle (the ``bundle`` label)."""

    def __init__(self, metrics: Metrics, bundle: str) -> None:
        self._preprocess = metrics.preprocess.labels(bundle)
        self._queue_wait = metrics.queue_wait.labels(bundle)
        self._inference = metrics.inference.labels(bundle)
        self._batch_size = metrics.batch_size.labels(bundle)
        self._top1 = metrics.top1.labels(bundle)
        self._prediction_counts = metrics.predictions
        self._predictions: dict[str, Counter] = {}  # by label: the bundle's labels at most
        self._unlabelled = metrics.unlabelled.labels(bundle)
        self._bundle = bundle

    def preprocessed(self, seconds: float) -> None:
        self._preprocess.observe(seconds)

    def batch_started(self, queue_waits_s: Sequence[float]) -> None:
        for wait in queue_waits_s:
            self._queue_wait.observe(wait)

    def batch_finished(self, size: int, run_s: float) -> None:
        self._batch_size.observe(size)
        self._inference.observe(run_s)

    def predicted(self, labels: Sequence[str], top_probability: float) -> None:
        for label in labels:
            counter = self._predictions.get(label)
            if counter is None:
                counter = self._prediction_counts.labels(self._bundle, label)
                self._predictions[label] = counter
            counter.inc()
        if not labels:
            self._unlabelled.inc()
        self._top1.observe(top_probability)


def _latency(stage: str, documentation: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(
        f"fusionserve_{stage}_duration_seconds",
        documentation,
        ["bundle"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


class _StateCollector(Collector):
    """The ``STATE_METRICS`` of one process, read at scrape time."""

    def __init__(self, core: ServingCore) -> None:
        self._core = core

    def collect(self) -> Iterator[Metric]:
        values = state_values(self._core)
        for metric in STATE_METRICS:
            kind = CounterMetricFamily if metric.counter else GaugeMetricFamily
            family = kind(metric.name, metric.documentation, labels=list(metric.labels))
            for labels, value in values[metric.name]:
                family.add_metric(list(labels), value)
            yield family
