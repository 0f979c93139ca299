"""Server CPU per request when the model costs nothing: this checkout against a baseline.

The overhead-bound regime (../shared/notes/performance-regimes.md): each checkout's
`fusionserve serve` on a tiny bundle (random ONNX encoders and head from
tests/support/tiny_bundle.py, 32x32 crops), default settings, gets 64 closed-loop clients
posting a 64x64 JPEG and a short text for ``--duration`` seconds. The figure is the server's
CPU time (user + system, its whole process tree, from /proc) over the window divided by the
200s answered; checkouts alternate, ``--rounds`` times, and the medians are compared. With
``--profile``, each window is also sampled with py-spy (``bench.overhead.profile_split``):
the CPU per request split into the work a request needs and the serving layer's parts. Each
run also records the models' time per request as the batcher times it
(``fusionserve_inference_duration_seconds`` over the window, from /metrics): where batches run
on the event loop, py-spy does not see ONNX Runtime's frames from it, so the profile's
"models" part misses what this figure keeps.

    python -m bench.overhead.request_overhead --baseline-root /tmp/fusionserve-before --profile

Writes bench/results/request-overhead.json; about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from app.config.settings import DEFAULT_BUNDLE_PATH
from bench.harness import procs
from bench.harness.loadgen import closed_loop, run, single_client
from bench.harness.paths import REPO_ROOT, RESULTS_DIR
from bench.harness.payloads import RequestSet, build_requests, tiny_requests
from bench.harness.servers import Server, SystemSpec
from bench.harness.session import git_head, rotated
from bench.harness.statistics import median, ratio
from bench.overhead import profile_split
from tests.support.tiny_bundle import make_tiny_bundle

RESULTS = RESULTS_DIR / "request-overhead.json"
DEFAULT_RESULTS = RESULTS_DIR / "request-overhead-default.json"


@dataclass(frozen=True)
class Plan:
    """What each checkout's server gets: ``bundle`` (None: a tiny one made for the run) and
    its ``requests``, ``concurrency`` closed-loop clients for ``duration_s``, then one client
    for ``single_s`` (0: none)."""

    bundle: Path | None
    requests: RequestSet
    concurrency: int
    duration_s: float
    single_s: float
    profile: bool


def _measure(root: Path, bundle: Path, port: int, plan: Plan, log: Path) -> dict[str, Any]:
    env = {"FUSIONSERVE_BUNDLE_PATH": str(bundle), "FUSIONSERVE_INTRA_OP_THREADS": "1"}
    server = Server(
        SystemSpec("overhead", "fusionserve", "overhead", port, env=env, root=root), log
    )
    requests, duration_s = plan.requests, plan.duration_s
    server.start()
    try:
        server.wait_ready(requests, 0)
        run(closed_loop(server.spec.base_url, requests, plan.concurrency, 3.0))  # warm-up
        members = server.track()
        cpu_before = procs.cpu_seconds(members)
        models_before = inference_seconds(server.spec.base_url)
        recording = profile_split.record(server.pid, duration_s - 1) if plan.profile else None
        result = run(closed_loop(server.spec.base_url, requests, plan.concurrency, duration_s))
        cpu = procs.cpu_seconds(server.track()) - cpu_before
        models_s = inference_seconds(server.spec.base_url) - models_before
        shares = profile_split.finish(recording)
        single = run(single_client(server.spec.base_url, requests, plan.single_s))
    finally:
        server.stop()
    summary = result.summary()
    cpu_ms = round(1000 * cpu / max(summary["ok"], 1), 3)
    measured: dict[str, Any] = {
        "cpu_ms_per_request": cpu_ms,
        "throughput_rps": summary["throughput_rps"],
        "statuses": summary["status_counts"],
        "models_us_by_batcher": round(1e6 * models_s / max(summary["ok"], 1), 1),
    }
    if plan.single_s > 0:
        latency = single.summary()["latency_ms"]
        measured["single_p50_ms"] = latency["p50"]
        measured["single_p99_ms"] = latency["p99"]
    if shares:
        measured["split_us"] = profile_split.per_request_us(shares, cpu_ms)
    return measured


def inference_seconds(base_url: str) -> float:
    """Seconds the server's batches have spent in the models so far."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        return inference_sum(response.read().decode())


def inference_sum(exposition: str) -> float:
    """The sum of ``fusionserve_inference_duration_seconds`` over every bundle in a
    Prometheus text exposition."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "fusionserve_inference_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_sum")
    )


def _medians(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    keys = [k for k, v in runs["after"][0].items() if isinstance(v, int | float)]
    return {
        label: {key: median((r[key] for r in results), digits=None) for key in keys}
        for label, results in runs.items()
    }


def measure(
    roots: dict[str, Path], plan: Plan, rounds: int, port: int, logs: Path
) -> dict[str, Any]:
    """``rounds`` alternating runs of each checkout in ``roots``; medians and ratios."""
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in roots}
    with tempfile.TemporaryDirectory() as folder:
        bundle = plan.bundle or make_tiny_bundle(Path(folder) / "tiny")
        for index in range(rounds):
            for label in rotated(list(roots), index):
                log = logs / f"overhead-{label}.log"
                runs[label].append(_measure(roots[label], bundle, port, plan, log))
                print(f"[{label}] {runs[label][-1]}", flush=True)
    medians = _medians(runs)
    ratios = {key: ratio(medians["after"][key], medians["before"][key]) for key in medians["after"]}
    results: dict[str, Any] = {
        "commit": git_head(roots["after"]),
        "baseline_commit": git_head(roots["before"]),
        "bundle": str(plan.bundle) if plan.bundle else "tests/support/tiny_bundle.py",
        "concurrency": plan.concurrency,
        "medians": medians,
        "after_over_before": ratios,
        "runs": runs,
    }
    if all("split_us" in r for results_of in runs.values() for r in results_of):
        results["split_us_medians"] = {
            label: {
                part: median((r["split_us"][part] for r in results_of), digits=1)
                for part in results_of[0]["split_us"]
            }
            for label, results_of in runs.items()
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead.request_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--baseline-root", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8131)
    parser.add_argument(
        "--out", type=Path, help=f"default {RESULTS} ({DEFAULT_RESULTS} with --default-bundle)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample each server with py-spy: the CPU per request split by part",
    )
    parser.add_argument(
        "--default-bundle",
        action="store_true",
        help="the default bundle and the suites' photos and titles, 16 clients, then one "
        "client for 10 s (saturation and single-client latency)",
    )
    args = parser.parse_args()
    roots = {"before": args.baseline_root.resolve(), "after": REPO_ROOT}
    if args.default_bundle:
        plan = Plan(DEFAULT_BUNDLE_PATH, build_requests(), 16, args.duration, 10.0, args.profile)
    else:
        plan = Plan(None, tiny_requests(), 64, args.duration, 0.0, args.profile)
    out = args.out or (DEFAULT_RESULTS if args.default_bundle else RESULTS)
    results = measure(roots, plan, args.rounds, args.port, out.parent / "logs")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"after/before: {results['after_over_before']}; wrote {out}")


if __name__ == "__main__":
    main()
