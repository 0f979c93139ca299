"""The request-overhead suite reads the models' time from the service's own metrics."""

from __future__ import annotations

import pytest

from app.config.settings import Settings
from app.core.engine import build_engine
from app.core.lifecycle import Lifecycle
from app.core.registry import ModelRegistry
from app.core.serving_core import ServingCore
from app.memory.memory_budget import MemoryBudget
from app.observability.metrics import Metrics
from bench.overhead.request_overhead import inference_sum


def test_the_models_time_is_the_inference_histograms_sum_over_bundles() -> None:
    core = ServingCore(ModelRegistry(Settings(), build_engine), Lifecycle(), MemoryBudget(2**20))
    metrics = Metrics(core)  # nothing loaded: only the observers below feed it
    for bundle, runs in (("a", (0.002, 0.003)), ("b", (0.005,))):
        observer = metrics.observer(bundle)
        for run_s in runs:
            observer.batch_started([0.001])
            observer.batch_finished(8, run_s)
    exposition = metrics.render().decode()
    assert inference_sum(exposition) == pytest.approx(0.010)
    assert inference_sum("") == 0.0
