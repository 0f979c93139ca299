"""Server CPU per request when the model costs nothing: this checkout against a baseline.

The overhead-bound regime (../shared/notes/performance-regimes.md): each checkout's
`fusionserve serve` on a tiny bundle (random ONNX encoders and head from
tests/support/tiny_bundle.py, 32x32 crops), `FUSIONSERVE_MAX_IN_FLIGHT=256`, gets 64
closed-loop clients posting a 64x64 JPEG and a short text for ``--duration`` seconds. The
figure is the server's CPU time (user + system, its whole process tree, from /proc) over the
window divided by the 200s answered; checkouts alternate, ``--rounds`` times, and the medians
are compared.

    python -m bench.overhead.request_overhead --baseline-root /tmp/fusionserve-before

Writes bench/results/request-overhead.json; about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import procs
from bench.harness.loadgen import closed_loop, run
from bench.harness.paths import REPO_ROOT, RESULTS_DIR
from bench.harness.payloads import tiny_requests
from bench.harness.servers import Server, SystemSpec
from bench.harness.session import rotated
from bench.harness.statistics import median, ratio
from tests.support.tiny_bundle import make_tiny_bundle

RESULTS = RESULTS_DIR / "request-overhead.json"


def _measure(root: Path, bundle: Path, port: int, duration_s: float, log: Path) -> dict[str, Any]:
    env = {
        "FUSIONSERVE_BUNDLE_PATH": str(bundle),
        "FUSIONSERVE_MAX_IN_FLIGHT": "256",
        "FUSIONSERVE_INTRA_OP_THREADS": "1",
    }
    server = Server(
        SystemSpec("overhead", "fusionserve", "overhead", port, env=env, root=root), log
    )
    requests = tiny_requests()
    server.start()
    try:
        server.wait_ready(requests, 0)
        run(closed_loop(server.spec.base_url, requests, 64, 3.0))  # warm-up
        members = server.track()
        cpu_before = procs.cpu_seconds(members)
        result = run(closed_loop(server.spec.base_url, requests, 64, duration_s))
        cpu = procs.cpu_seconds(server.track()) - cpu_before
    finally:
        server.stop()
    summary = result.summary()
    return {
        "cpu_ms_per_request": round(1000 * cpu / max(summary["ok"], 1), 3),
        "throughput_rps": summary["throughput_rps"],
        "statuses": summary["status_counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead.request_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--baseline-root", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8131)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    roots = {"before": args.baseline_root.resolve(), "after": REPO_ROOT}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in roots}
    with tempfile.TemporaryDirectory() as folder:
        bundle = make_tiny_bundle(Path(folder) / "tiny")
        for index in range(args.rounds):
            for label in rotated(list(roots), index):
                log = args.out.parent / "logs" / f"overhead-{label}.log"
                runs[label].append(_measure(roots[label], bundle, args.port, args.duration, log))
                print(f"[{label}] {runs[label][-1]}", flush=True)
    medians = {
        label: {
            key: median((r[key] for r in results), digits=None)
            for key in ("cpu_ms_per_request", "throughput_rps")
        }
        for label, results in runs.items()
    }
    ratios = {key: ratio(medians["after"][key], medians["before"][key]) for key in medians["after"]}
    results = {"medians": medians, "after_over_before": ratios, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"after/before: {ratios}; wrote {args.out}")


if __name__ == "__main__":
    main()
