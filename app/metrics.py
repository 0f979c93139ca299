"""Prometheus metrics, one registry per app. The only module that uses prometheus_client.

Counters and histograms are fed through plain hooks (``ServiceObserver``, the HTTP metrics
middleware, the error listener); gauges, info metrics and the text-cache counters are read
from the service state at scrape time. Every metric is described in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app import __version__
from app.api.state import ServiceState, Status
from app.bundle.manifest import Manifest
from app.errors import (
    ClientDisconnected,
    DeadlineExceeded,
    NotReady,
    Overloaded,
    RequestError,
    ShuttingDown,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024, max_batch_size's cap
PROBABILITY_BUCKETS = tuple(i / 10 for i in range(1, 11))  # 0.1 .. 1.0
# Methods outside this set are counted as "other", so clients cannot grow the label set.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REJECTION_REASONS: dict[type[RequestError], str] = {
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
    """The app's metrics. Implements ``app.observer.ServiceObserver``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, state: ServiceState) -> None:
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
        self.preprocess = _latency("preprocess", "Decoding and tokenising one item.", registry)
        self.queue_wait = _latency(
            "queue_wait", "One item's wait from submission to the start of its batch.", registry
        )
        self.inference = _latency("inference", "Running one batch through the models.", registry)
        self.batch_size = Histogram(
            "fusionserve_batch_size",
            "Items per batch that ran successfully.",
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
            buckets=PROBABILITY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "fusionserve_predictions",
            "Classified items, by their most probable label.",
            ["label"],
            registry=registry,
        )
        build = Gauge("fusionserve_build_info", "Always 1.", ["version"], registry=registry)
        build.labels(__version__).set(1)
        registry.register(_StateCollector(state))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route).observe(seconds)

    def count_error(self, error: RequestError) -> None:
        """Count ``error`` if it is a refusal; other errors show in the HTTP status counts."""
        reason = rejection_reason(error)
        if reason is not None:
            self.rejected.labels(reason).inc()

    def preprocessed(self, seconds: float) -> None:
        self.preprocess.observe(seconds)

    def batch_started(self, queue_waits_s: Sequence[float]) -> None:
        for wait in queue_waits_s:
            self.queue_wait.observe(wait)

    def batch_finished(self, size: int, run_s: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(run_s)

    def predicted(self, label: str, probability: float) -> None:
        self.predictions.labels(label).inc()
        self.top1.observe(probability)


def _latency(stage: str, documentation: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(
        f"fusionserve_{stage}_duration_seconds",
        documentation,
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


class _StateCollector(Collector):
    """Values read from the service at scrape time; safe before the bundle has loaded."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state
        classifier = state.classifier
        ready = state.status is Status.READY and classifier is not None
        yield GaugeMetricFamily(
            "fusionserve_ready", "1 when the service takes requests, else 0.", value=int(ready)
        )
        queued = in_flight = hits = misses = 0
        if classifier is not None:
            cache = classifier.engine.pipeline.text_cache
            queued, in_flight = classifier.batcher.queue_depth, classifier.in_flight
            hits, misses = cache.hits, cache.misses
        yield GaugeMetricFamily("fusionserve_queue_depth", "Items waiting for a batch.", queued)
        yield GaugeMetricFamily(
            "fusionserve_in_flight_items",
            "Items accepted and not yet answered (decoding, queued or running).",
            in_flight,
        )
        yield CounterMetricFamily("fusionserve_text_cache_hits", "Text-cache hits.", hits)
        yield CounterMetricFamily("fusionserve_text_cache_misses", "Text-cache misses.", misses)
        if classifier is not None:
            yield from _engine_info(classifier.engine.bundle.manifest, classifier.engine.providers)


def _engine_info(manifest: Manifest, providers: dict[str, list[str]]) -> Iterator[Metric]:
    bundle = GaugeMetricFamily(
        "fusionserve_bundle_info", "The loaded bundle; always 1.", labels=["name", "version"]
    )
    bundle.add_metric([manifest.name, manifest.version], 1)
    yield bundle
    provider_info = GaugeMetricFamily(
        "fusionserve_execution_provider_info",
        "Execution providers each model's session really uses; always 1.",
        labels=["model", "provider"],
    )
    for model, names in providers.items():
        for name in names:
            provider_info.add_metric([model, name], 1)
    yield provider_info
