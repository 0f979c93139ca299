"""(a) The scaling curve: the tiny bundle (tests/support/tiny_bundle.py: models that cost
nothing, so the serving path is all there is) served with FUSIONSERVE_WORKERS = 1, 2, 4, 8,
each at ``clients_per_worker`` x workers closed-loop clients; req/s against one worker's, and
whether the load generator was the limit.

Images decode on the CPU (FUSIONSERVE_IMAGE_DECODER=cpu: 64x64 JPEGs, decoded inline) so
that the curve is the serving path's; GPU decoding is step (b)'s."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.gpu.plan import SCALING_EFFICIENCY, Plan
from bench.gpu.serving import measure, serving
from bench.harness.payloads import tiny_requests
from bench.harness.statistics import ratio_or_none
from tests.support.tiny_bundle import make_tiny_bundle

SETTINGS = {"FUSIONSERVE_INTRA_OP_THREADS": "1", "FUSIONSERVE_IMAGE_DECODER": "cpu"}


def server_env(bundle: Path, plan: Plan, workers: int) -> dict[str, str]:
    return {
        **SETTINGS,
        "FUSIONSERVE_BUNDLE_PATH": str(bundle),
        "FUSIONSERVE_DEVICE": plan.device,
        "FUSIONSERVE_WORKERS": str(workers),
        # Admission never refuses: each worker's share has room for twice its clients (the
        # kernel does not spread connections evenly).
        "FUSIONSERVE_MAX_IN_FLIGHT": str(2 * plan.clients_per_worker * workers),
    }


def efficiency(runs: list[dict[str, Any]]) -> None:
    """Add each run's req/s over ``workers`` x one worker's, and whether it meets the target
    (or its load generator was the limit)."""
    one = next((r["throughput_rps"] for r in runs if r["workers"] == 1), None)
    for run in runs:
        ideal = one * run["workers"] if one else None
        run["speedup"] = ratio_or_none(run["throughput_rps"], one)
        run["efficiency"] = ratio_or_none(run["throughput_rps"], ideal)
        met = run["efficiency"] is not None and run["efficiency"] >= SCALING_EFFICIENCY
        run["target_met"] = met
        run["loadgen_bound"] = bool(run["loadgen"]["bound"])


def measure_scaling(plan: Plan, logs: Path) -> dict[str, Any]:
    requests = tiny_requests()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        bundle = make_tiny_bundle(Path(folder) / "tiny")
        for offset, workers in enumerate(plan.workers):
            env = server_env(bundle, plan, workers)
            port = plan.base_port + offset
            log = logs / f"scaling-{workers}.log"
            with serving(f"workers-{workers}", port, env, requests, log) as server:
                clients = plan.clients_per_worker * workers
                measure(server, requests, clients, plan.scaling_warmup_s, plan.loadgen_processes)
                window = measure(server, requests, clients, plan.scaling_s, plan.loadgen_processes)
            runs.append({"workers": workers, **window})
    efficiency(runs)
    return {
        "bundle": "tiny (tests/support/tiny_bundle.py)",
        "request": "64x64 JPEG + short text (bench.harness.payloads.tiny_requests)",
        "settings": {**SETTINGS, "FUSIONSERVE_DEVICE": plan.device},
        "clients_per_worker": plan.clients_per_worker,
        "duration_s": plan.scaling_s,
        "target_efficiency": SCALING_EFFICIENCY,
        "runs": runs,
    }
