"""The overhead benchmark's runs summarised: per system the median and range (by repeat) of
each figure, FusionServe against LitServe, and the targets with their verdicts (issue 15's,
with issue 26's bound on CPU per request).

Pure functions of the results file's ``runs``: the runner stores what ``summarize`` returns,
and the renderer (bench.overhead.overhead_doc) computes it again from the runs it renders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from bench.harness.statistics import median, ratio_or_none

FUSIONSERVE = "fusionserve"
LITSERVE = "litserve"
FLOOR = "floor"

# The targets for the overhead-bound case (the tiny bundle, 64 clients): issue 15's, the
# CPU per request lowered to 0.45 ms by issue 26 (it was 0.6).
RPS_VS_LITSERVE_AT_LEAST = 2.5
CPU_VS_LITSERVE_AT_MOST = 1 / 3
CPU_MS_AT_MOST = 0.45
REJECTED_AT_MOST = 0
# Ratios are compared unrounded; this only absorbs float noise at an exact bound (1/3).
EPSILON = 1e-9


class Spread(TypedDict):
    """A figure over the repeats: median, lowest and highest (None when nothing ran)."""

    median: float | None
    min: float | None
    max: float | None


def spread(values: Sequence[float]) -> Spread:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": median(values), "min": min(values), "max": max(values)}


def completed(runs: Sequence[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """``system``'s runs that were measured (a failed start leaves an ``error`` instead)."""
    return [r for r in runs if r["system"] == system and "error" not in r]


def _count(statuses: dict[str, int], wanted: Callable[[str], bool]) -> int:
    return sum(n for status, n in statuses.items() if wanted(status))


def non_200(run: dict[str, Any]) -> dict[str, int]:
    """Answers other than 200 in a run's measured window and in its warm-up, by status."""
    counts: dict[str, int] = {}
    for phase in (run["status_counts"], run["warmup_status_counts"]):
        for status, n in phase.items():
            if status != "200":
                counts[status] = counts.get(status, 0) + n
    return counts


def system_summary(runs: Sequence[dict[str, Any]], system: str) -> dict[str, Any]:
    """Medians and ranges of ``system``'s figures, and its non-200 answers summed."""
    done = completed(runs, system)
    failed = [r for r in runs if r["system"] == system and "error" in r]

    def figure(get: Callable[[dict[str, Any]], float | None]) -> Spread:
        return spread([v for r in done if (v := get(r)) is not None])

    window = [r["status_counts"] for r in done]
    warmup = [r["warmup_status_counts"] for r in done]
    return {
        "repeats": len(done),
        "failed": len(failed),
        "throughput_rps": figure(lambda r: r["throughput_rps"]),
        "p50_ms": figure(lambda r: r["latency_ms"]["p50"]),
        "p99_ms": figure(lambda r: r["latency_ms"]["p99"]),
        "cpu_ms_per_request": figure(lambda r: r["cpu_ms_per_request"]),
        "client_cpu_ms_per_request": figure(lambda r: r["client_cpu_ms_per_request"]),
        "startup_s": figure(lambda r: r["startup_s"]),
        "processes": figure(lambda r: r["processes"]),
        "503": sum(_count(s, lambda status: status == "503") for s in window),
        "503_warmup": sum(_count(s, lambda status: status == "503") for s in warmup),
        "other_non_200": sum(
            _count(s, lambda status: status not in {"200", "503"}) for s in window
        ),
        "other_non_200_warmup": sum(
            _count(s, lambda status: status not in {"200", "503"}) for s in warmup
        ),
        "other_cpu_s": [r["other_cpu_s"] for r in done],
    }


def _by_repeat_ratios(
    runs: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], float]
) -> list[float]:
    """FusionServe's figure over LitServe's within each repeat both completed."""
    ours = {r["repeat"]: key(r) for r in completed(runs, FUSIONSERVE)}
    theirs = {r["repeat"]: key(r) for r in completed(runs, LITSERVE)}
    found = [ratio_or_none(ours[i], theirs[i]) for i in sorted(ours.keys() & theirs.keys())]
    return [value for value in found if value is not None]


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: what it bounds, the measured value and whether it is met
    (None: not measured)."""

    name: str
    bound: str
    value: float | None
    met: bool | None
    rests_on: str

    def verdict(self) -> str:
        return {True: "met", False: "missed", None: "not measured"}[self.met]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def targets(summary: dict[str, Any]) -> list[Target]:
    """The four targets for the overhead-bound case, judged on the medians (and the
    503s summed over every FusionServe run, warm-ups included)."""
    systems = summary["systems"]
    ours = systems.get(FUSIONSERVE)
    theirs = systems.get(LITSERVE)
    ratios = summary["fusionserve_over_litserve"]
    found: list[Target] = []

    rps = ratios["throughput_rps"]
    found.append(
        Target(
            "FusionServe req/s / LitServe req/s",
            f">= {RPS_VS_LITSERVE_AT_LEAST:g}x",
            rps,
            None if rps is None else rps >= RPS_VS_LITSERVE_AT_LEAST - EPSILON,
            "medians "
            + (
                f"{_fmt(ours['throughput_rps']['median'], 1)} / "
                f"{_fmt(theirs['throughput_rps']['median'], 1)} req/s"
                if ours and theirs
                else "-"
            ),
        )
    )
    cpu = ratios["cpu_ms_per_request"]
    found.append(
        Target(
            "FusionServe server CPU per request / LitServe's",
            "<= 1/3 (0.333x)",
            cpu,
            None if cpu is None else cpu <= CPU_VS_LITSERVE_AT_MOST + EPSILON,
            "medians "
            + (
                f"{_fmt(ours['cpu_ms_per_request']['median'])} / "
                f"{_fmt(theirs['cpu_ms_per_request']['median'])} ms"
                if ours and theirs
                else "-"
            ),
        )
    )
    own = ours["cpu_ms_per_request"]["median"] if ours else None
    found.append(
        Target(
            "FusionServe server CPU per request",
            f"<= {CPU_MS_AT_MOST:g} ms",
            own,
            None if own is None else own <= CPU_MS_AT_MOST + EPSILON,
            "median of the repeats"
            + (
                f" ({_fmt(ours['cpu_ms_per_request']['min'])} to "
                f"{_fmt(ours['cpu_ms_per_request']['max'])} ms)"
                if ours and own is not None
                else ""
            ),
        )
    )
    rejected = (ours["503"] + ours["503_warmup"]) if ours and ours["repeats"] else None
    found.append(
        Target(
            "FusionServe 503 answers",
            f"= {REJECTED_AT_MOST}",
            rejected,
            None if rejected is None else rejected <= REJECTED_AT_MOST,
            (
                f"{ours['503']} in the measured windows + {ours['503_warmup']} in the warm-ups "
                f"of {ours['repeats']} runs"
                if ours and rejected is not None
                else "-"
            ),
        )
    )
    return found


def summarize(runs: Sequence[dict[str, Any]], systems: Sequence[str]) -> dict[str, Any]:
    """Per system (in ``systems``' order) its summary; FusionServe over LitServe (ratio of
    the medians, and the range of the ratios within a repeat); CPU per request above the
    raw-ASGI floor's; and the targets."""
    per_system = {key: system_summary(runs, key) for key in systems}
    medians = {
        key: {name: s[name]["median"] for name in ("throughput_rps", "cpu_ms_per_request")}
        for key, s in per_system.items()
    }
    missing = {"throughput_rps": None, "cpu_ms_per_request": None}
    ours, theirs = medians.get(FUSIONSERVE, missing), medians.get(LITSERVE, missing)
    floor = medians.get(FLOOR, missing)["cpu_ms_per_request"]
    summary: dict[str, Any] = {
        "systems": per_system,
        # Unrounded: the verdicts compare it with the bounds (the doc shows 3 decimals).
        "fusionserve_over_litserve": {
            name: ratio_or_none(ours[name], theirs[name], digits=None)
            for name in ("throughput_rps", "cpu_ms_per_request")
        },
        "fusionserve_over_litserve_by_repeat": {
            "throughput_rps": _by_repeat_ratios(runs, lambda r: r["throughput_rps"]),
            "cpu_ms_per_request": _by_repeat_ratios(runs, lambda r: r["cpu_ms_per_request"]),
        },
        "cpu_ms_above_floor": {
            key: (
                None
                if floor is None or m["cpu_ms_per_request"] is None
                else round(m["cpu_ms_per_request"] - floor, 3)
            )
            for key, m in medians.items()
            if key != FLOOR
        },
    }
    summary["targets"] = [
        {
            "name": t.name,
            "bound": t.bound,
            "value": t.value,
            "verdict": t.verdict(),
            "rests_on": t.rests_on,
        }
        for t in targets(summary)
    ]
    return summary
