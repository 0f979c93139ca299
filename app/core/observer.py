"""Hooks through which the classifier and the batcher report what they do.

Plain method calls with plain values: ``app.observability.metrics`` turns them into Prometheus
metrics, and
nothing here depends on it. Every hook runs on the event loop thread and must not block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class BatchObserver(Protocol):
    def batch_started(self, queue_waits_s: Sequence[float]) -> None:
        """A batch is about to run; each item's time from submission to now."""

    def batch_finished(self, size: int, run_s: float) -> None:
        """A batch of ``size`` items ran successfully in ``run_s`` seconds."""


class ServiceObserver(BatchObserver, Protocol):
    def preprocessed(self, seconds: float) -> None:
        """One item was decoded and tokenised (successfully) in ``seconds``."""

    def predicted(self, labels: Sequence[str], top_probability: float) -> None:
        """One item was classified: the labels it was given (a multiclass item's one class;
        a multilabel item's labels at or above their thresholds, maybe none) and the
        probability of its most probable label."""


class NullObserver:
    """Observes nothing."""

    def batch_started(self, queue_waits_s: Sequence[float]) -> None:
        pass

    def batch_finished(self, size: int, run_s: float) -> None:
        pass

    def preprocessed(self, seconds: float) -> None:
        pass

    def predicted(self, labels: Sequence[str], top_probability: float) -> None:
        pass
