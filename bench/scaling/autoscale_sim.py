"""The shipped HorizontalPodAutoscaler (deploy/base/hpa.yaml), simulated on a traffic ramp:
how many pods a load needs and how long scaling up takes.

Kubernetes' algorithm (autoscaling/v2, as documented for the HPA controller), every
``SYNC_S`` seconds: the mean CPU utilisation over the pods; pods not ready yet count as 0%
when the answer would be to scale up; desired = ceil(pods x mean / target), unchanged within
``TOLERANCE``; within min and max replicas; scale-up limited by the behaviour's policy (here
+100% per 30 s) after its stabilisation window (0 s), scale-down by its policy (1 pod per
60 s) after taking the highest recommendation of its window (300 s).

What is modelled, and what it rests on:

* A CPU replica is CPU-bound: its utilisation is the load it serves over what it serves at
  saturation (``capacity_rps``, from the peer benchmark's committed results), capped at
  100%; load beyond what the ready pods can serve is overflow (503s and waiting).
* CPU is read as the mean over the last ``METRIC_WINDOW_S`` seconds (metrics-server's
  resolution), so the HPA sees load late.
* A new pod serves ``pod_ready_s`` after the HPA asks for it: the measured start-up of the
  process (from the results) plus ``SCHEDULE_S`` for scheduling and starting the container,
  which is an assumption (a cached image on a node with room), not a measurement.
* The load is spread evenly over the ready pods (the Service's balancing).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SYNC_S = 15.0  # --horizontal-pod-autoscaler-sync-period's default
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance's default
METRIC_WINDOW_S = 30.0
SCHEDULE_S = 10.0
STEP_S = 1.0


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    target_utilisation: float  # a fraction: 0.7 for 70%
    up_window_s: float
    up_percent: float  # per up_period_s
    up_period_s: float
    down_window_s: float
    down_pods: int  # per down_period_s
    down_period_s: float

    @classmethod
    def from_manifest(cls, path: Path) -> HpaSpec:
        """The spec of an HPA manifest with one CPU Utilization metric, one Percent policy
        up and one Pods policy down (as deploy/base/hpa.yaml)."""
        spec: dict[str, Any] = yaml.safe_load(path.read_text())["spec"]
        (metric,) = spec["metrics"]
        up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
        (up_policy,), (down_policy,) = up["policies"], down["policies"]
        if (up_policy["type"], down_policy["type"]) != ("Percent", "Pods"):
            raise ValueError("expected a Percent policy up and a Pods policy down")
        return cls(
            min_replicas=spec["minReplicas"],
            max_replicas=spec["maxReplicas"],
            target_utilisation=metric["resource"]["target"]["averageUtilization"] / 100,
            up_window_s=up["stabilizationWindowSeconds"],
            up_percent=up_policy["value"],
            up_period_s=up_policy["periodSeconds"],
            down_window_s=down["stabilizationWindowSeconds"],
            down_pods=down_policy["value"],
            down_period_s=down_policy["periodSeconds"],
        )


@dataclass(frozen=True)
class Ramp:
    """Load from ``start_rps`` to ``peak_rps`` linearly over ``ramp_s``, held for
    ``hold_s``, then back to ``start_rps`` at once and held for ``tail_s``."""

    start_rps: float
    peak_rps: float
    ramp_s: float
    hold_s: float
    tail_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.ramp_s + self.hold_s + self.tail_s

    def load(self, t: float) -> float:
        if t < self.ramp_s:
            return self.start_rps + (self.peak_rps - self.start_rps) * t / self.ramp_s
        if t < self.ramp_s + self.hold_s:
            return self.peak_rps
        return self.start_rps


@dataclass(frozen=True)
class Sample:
    t: float
    load_rps: float
    ready: int
    replicas: int  # asked for (ready or starting)
    utilisation: float  # mean over the ready pods, as the HPA last saw it
    overflow_rps: float


def pods_needed(load_rps: float, capacity_rps: float, spec: HpaSpec) -> int:
    """The replicas the HPA settles on for a steady ``load_rps``: the fewest whose mean
    utilisation is within the tolerance of the target, within min and max."""
    pods = spec.min_replicas
    while pods < spec.max_replicas:
        utilisation = min(1.0, load_rps / (pods * capacity_rps))
        if utilisation / spec.target_utilisation <= 1 + TOLERANCE:
            break
        pods += 1
    return pods


def simulate(spec: HpaSpec, ramp: Ramp, capacity_rps: float, pod_ready_s: float) -> list[Sample]:
    """One sample per HPA sync over the ramp."""
    starting: list[float] = []  # when each starting pod becomes ready
    ready = spec.min_replicas
    recommendations: deque[tuple[float, int]] = deque()  # (time, desired)
    replica_history: deque[tuple[float, int]] = deque([(0.0, ready)])
    served: deque[tuple[float, float]] = deque()  # (time, mean utilisation of ready pods)
    samples = []
    last_down = -math.inf
    t = 0.0
    while t <= ramp.duration_s:
        now_ready = [when for when in starting if when <= t]
        ready += len(now_ready)
        starting = [when for when in starting if when > t]
        load = ramp.load(t)
        served.append((t, min(1.0, load / (ready * capacity_rps))))
        while served and served[0][0] < t - METRIC_WINDOW_S:
            served.popleft()
        if t % SYNC_S == 0:
            replicas = ready + len(starting)
            utilisation = sum(u for _, u in served) / len(served)
            desired = _recommend(spec, ready, len(starting), utilisation)
            recommendations.append((t, desired))
            target = _stabilise(spec, recommendations, replicas, t)
            limited = _limit(spec, target, replicas, replica_history, t, last_down)
            if limited > replicas:
                starting += [t + pod_ready_s] * (limited - replicas)
            elif limited < replicas:
                ready -= replicas - limited
                last_down = t
            replica_history.append((t, limited))
            samples.append(
                Sample(
                    t,
                    round(load, 1),
                    ready,
                    limited,
                    round(utilisation, 3),
                    round(max(0.0, load - ready * capacity_rps), 1),
                )
            )
        t += STEP_S
    return samples


def _recommend(spec: HpaSpec, ready: int, starting: int, utilisation: float) -> int:
    """Kubernetes' desired replicas from the ready pods' mean utilisation; starting pods
    count as idle when that would scale up."""
    ratio = utilisation / spec.target_utilisation
    if abs(ratio - 1) <= TOLERANCE:
        return ready + starting
    if ratio > 1 and starting:
        ratio = utilisation * ready / ((ready + starting) * spec.target_utilisation)
        if ratio <= 1 + TOLERANCE:
            return ready + starting
    desired = math.ceil(ratio * ready)
    return max(spec.min_replicas, min(spec.max_replicas, desired))


def _stabilise(
    spec: HpaSpec, recommendations: deque[tuple[float, int]], replicas: int, t: float
) -> int:
    """Up: the least recommendation of the up window; down: the most of the down window."""
    longest = max(spec.up_window_s, spec.down_window_s)
    while recommendations and recommendations[0][0] < t - longest:
        recommendations.popleft()
    up = min(d for when, d in recommendations if when >= t - spec.up_window_s)
    down = max(d for when, d in recommendations if when >= t - spec.down_window_s)
    if up > replicas:
        return up
    if down < replicas:
        return down
    return replicas


def _limit(
    spec: HpaSpec,
    target: int,
    replicas: int,
    history: deque[tuple[float, int]],
    t: float,
    last_down: float,
) -> int:
    """The behaviour's policies: up by at most ``up_percent`` of the replicas at the start of
    the period, down by at most ``down_pods`` per period."""
    if target > replicas:
        at_start = next(
            (n for when, n in reversed(history) if when <= t - spec.up_period_s), history[0][1]
        )
        most = math.ceil(at_start * (1 + spec.up_percent / 100))
        return max(replicas, min(target, most))
    if target < replicas:
        if t - last_down < spec.down_period_s:
            return replicas
        return max(target, replicas - spec.down_pods)
    return replicas
