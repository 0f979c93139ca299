"""The HPA simulation: the manifest read as shipped, and Kubernetes' rules (tolerance,
pods still starting, the scale-up and scale-down policies and windows) on small cases."""

from __future__ import annotations

import yaml

from bench.scaling.autoscale_sim import (
    SYNC_S,
    HpaSpec,
    Ramp,
    _recommend,
    pods_needed,
    simulate,
)
from tests.support.repo_paths import ROOT

HPA = ROOT / "deploy" / "base" / "hpa.yaml"
SPEC = HpaSpec.from_manifest(HPA)


def test_the_shipped_manifest_is_read_as_written() -> None:
    spec = yaml.safe_load(HPA.read_text())["spec"]
    assert (SPEC.min_replicas, SPEC.max_replicas) == (spec["minReplicas"], spec["maxReplicas"])
    target = spec["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert SPEC.target_utilisation == target / 100
    assert (SPEC.up_percent, SPEC.up_period_s, SPEC.up_window_s) == (100, 30, 0)
    assert (SPEC.down_pods, SPEC.down_period_s, SPEC.down_window_s) == (1, 60, 300)


def test_within_the_tolerance_nothing_changes_and_starting_pods_count_idle() -> None:
    assert _recommend(SPEC, ready=4, starting=0, utilisation=0.75) == 4  # 0.75/0.7 < 1.1
    assert _recommend(SPEC, ready=4, starting=0, utilisation=0.84) == 5  # ceil(1.2 x 4)
    # Two pods on their way already cover it: 0.84 x 4 / (6 x 0.7) = 0.8.
    assert _recommend(SPEC, ready=4, starting=2, utilisation=0.84) == 6
    assert _recommend(SPEC, ready=4, starting=0, utilisation=0.1) == SPEC.min_replicas


def test_pods_needed_keep_the_target_within_the_tolerance() -> None:
    assert pods_needed(10, 60.0, SPEC) == SPEC.min_replicas
    assert pods_needed(200, 60.0, SPEC) == 5  # 200 / (5 x 60) = 67%
    assert pods_needed(10_000, 60.0, SPEC) == SPEC.max_replicas


def test_scale_up_at_most_doubles_per_period_and_down_waits_its_window() -> None:
    ramp = Ramp(start_rps=10, peak_rps=590, ramp_s=1, hold_s=300, tail_s=900)
    samples = simulate(SPEC, ramp, capacity_rps=60.0, pod_ready_s=5.0)
    by_time = {s.t: s for s in samples}
    replicas = [s.replicas for s in samples]
    for earlier, later in zip(samples, samples[2:], strict=False):  # 30 s apart
        assert later.replicas <= 2 * earlier.replicas
    assert max(replicas) == SPEC.max_replicas
    assert by_time[0].overflow_rps == 0
    assert by_time[SYNC_S].overflow_rps > 0  # the load came faster than pods can
    served = [s.t for s in samples if s.t <= ramp.ramp_s + ramp.hold_s and s.overflow_rps > 0]
    assert max(served) < 120  # served in full within two minutes
    # Down: nothing before the 300 s window has passed since the drop, then one pod a minute.
    drop = ramp.ramp_s + ramp.hold_s
    assert all(s.replicas == SPEC.max_replicas for s in samples if drop <= s.t < drop + 300)
    falling = [s for s in samples if s.t >= drop + 300 and s.replicas > SPEC.min_replicas]
    for earlier, later in zip(falling, falling[4:], strict=False):  # 60 s apart
        assert earlier.replicas - later.replicas <= 1
    assert samples[-1].replicas == SPEC.min_replicas
