"""The sizing rule for a pod of worker processes: each worker's own terms count once per
worker, the pod's items in flight once."""

from __future__ import annotations

from app.config.settings import Settings
from bench.memory.sizing_rule import worst_case_terms
from tests.support.memory_sizing import measured_warm_rss_bytes, worst_case_bytes


def test_a_pod_of_workers_is_sized_per_worker() -> None:
    settings = Settings(max_in_flight=128)
    one = worst_case_terms(400 * 2**20, settings, cuda=True)
    two = worst_case_terms(
        400 * 2**20, settings.model_copy(update={"workers": 2}), cuda=True, workers=2
    )
    assert list(one) == list(two)
    for name, value in one.items():
        # The pod's items in flight are shared out; everything else is each worker's own.
        assert two[name] == (value if name == "items waiting for a batch" else 2 * value), name
    # workers=auto in a container of 4 CPUs is two workers, and is sized so.
    auto = settings.model_copy(update={"workers": "auto"})
    assert worst_case_bytes(auto, cuda=True, cpus=4.0) == worst_case_terms(
        measured_warm_rss_bytes(), auto, cuda=True, workers=2
    )
