"""The ``autoscale`` section of docs/scaling.md: per-pod capacity from the peer benchmark's
committed results (bench/results/results.json) and the shipped HPA (deploy/base/hpa.yaml)
simulated on it (``bench.scaling.autoscale_sim``): pods per steady load, and a traffic ramp.

``python -m bench.scaling.scaling_doc`` rewrites the section; ``--check`` changes nothing and
exits 1 when it is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from bench.harness.generated_docs import sections_main
from bench.harness.paths import DOCS_DIR, REPO_ROOT, RESULTS_DIR, read_results
from bench.scaling.autoscale_sim import (
    METRIC_WINDOW_S,
    SCHEDULE_S,
    SYNC_S,
    TOLERANCE,
    HpaSpec,
    Ramp,
    pods_needed,
    simulate,
)

DOC = DOCS_DIR / "scaling.md"
SECTION = "autoscale"
RESULTS = RESULTS_DIR / "results.json"
HPA = REPO_ROOT / "deploy" / "base" / "hpa.yaml"
LOADS = (50, 100, 200, 300, 400, 600)
RAMP = Ramp(start_rps=20, peak_rps=400, ramp_s=60, hold_s=540, tail_s=900)
EVERY_S = 60


def render(results: dict[str, Any]) -> str:
    system = results["summary"]["systems"]["a"]
    capacity, startup_s = system["saturation_rps"], system["startup_s"]
    rate = results["summary"]["open_rate_rps"]
    spec = HpaSpec.from_manifest(HPA)
    ready_s = startup_s + SCHEDULE_S
    samples = simulate(spec, RAMP, capacity, ready_s)
    served = next((s.t for s in samples if s.t >= RAMP.ramp_s and s.overflow_rps == 0), None)
    overflow_s = sum(SYNC_S for s in samples if s.overflow_rps > 0)
    down = next(
        (
            s.t
            for s in samples
            if s.t > RAMP.ramp_s + RAMP.hold_s and s.replicas == spec.min_replicas
        ),
        None,
    )
    lines = [
        f"Per-pod capacity, from the peer benchmark's committed run ({results['started'][:10]}, "
        "[bench/results/results.json](../bench/results/results.json)): one CPU replica of "
        "the default bundle (2 cores, the base deployment's request) saturates at "
        f"**{capacity:g} req/s**; at 70% of that rate ({min(rate):g}-{max(rate):g} req/s by "
        f"repeat) its p99 is {system['open_p99_ms']:.0f} ms; it answers {startup_s:g} s after "
        "its process starts. A GPU replica has not been measured (no GPU machine yet).",
        "",
        f"The shipped HPA (`deploy/base/hpa.yaml`): {spec.min_replicas} to "
        f"{spec.max_replicas} replicas at {spec.target_utilisation:.0%} CPU; up by "
        f"{spec.up_percent:g}% per {spec.up_period_s:g} s at once, down by "
        f"{spec.down_pods} pod per {spec.down_period_s:g} s after a {spec.down_window_s:g} s "
        f"window. Simulated with Kubernetes' algorithm (sync every {SYNC_S:g} s, tolerance "
        f"{TOLERANCE:g}, CPU read over {METRIC_WINDOW_S:g} s, pods still starting counted idle "
        f"when scaling up); a new pod serves {ready_s:g} s after it is asked for: its measured "
        f"start-up plus {SCHEDULE_S:g} s assumed for scheduling and starting the container.",
        "",
        "Pods the HPA settles on for a steady load:",
        "",
        "| Load (req/s) | Pods | CPU per pod |",
        "| ---: | ---: | ---: |",
    ]
    for load in LOADS:
        pods = pods_needed(load, capacity, spec)
        utilisation = min(1.0, load / (pods * capacity))
        over = utilisation > spec.target_utilisation * (1 + TOLERANCE)
        note = " (maxReplicas: the target is not met)" if over else ""
        lines.append(f"| {load} | {pods}{note} | {utilisation:.0%} |")
    lines += [
        "",
        f"A ramp from {RAMP.start_rps:g} to {RAMP.peak_rps:g} req/s over {RAMP.ramp_s:g} s, "
        f"held {RAMP.hold_s:g} s, then back to {RAMP.start_rps:g} req/s "
        f"(every {EVERY_S} s shown):",
        "",
        "| Time (s) | Load (req/s) | Pods asked for | Pods serving | CPU seen by the HPA | "
        "Load over capacity (req/s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        if s.t % EVERY_S == 0:
            lines.append(
                f"| {s.t:g} | {s.load_rps:g} | {s.replicas} | {s.ready} | "
                f"{s.utilisation:.0%} | {s.overflow_rps:g} |"
            )
    lines += [
        "",
        f"Load over capacity for {overflow_s:g} s of the ramp; the peak is served from "
        f"t = {served:g} s"
        if served is not None
        else "The peak is never fully served",
    ]
    lines[-1] += (
        f"; back to {spec.min_replicas} pods at t = {down:g} s."
        if down is not None
        else f"; not back to {spec.min_replicas} pods within the run."
    )
    return "\n".join(lines)


def committed_sections() -> dict[str, str]:
    return {SECTION: render(read_results(RESULTS))}


def main(argv: Sequence[str] | None = None) -> int:
    return sections_main(
        "python -m bench.scaling.scaling_doc",
        (__doc__ or "").split("\n\n")[0],
        DOC,
        committed_sections,
        sys.argv[1:] if argv is None else argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
