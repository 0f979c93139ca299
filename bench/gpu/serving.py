"""One FusionServe server of the GPU check: started with the step's settings, ready in every
worker, measured under closed-loop load from several processes (bench.harness.multiload)
with its whole process tree's CPU, and stopped."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.harness import procs
from bench.harness.multiload import closed_load
from bench.harness.payloads import RequestSet
from bench.harness.servers import Server, ServerError, SystemSpec

READY_TIMEOUT_S = 120.0
# A stop under a time limit must be quick; an idle server stops in about a second.
STOP_GRACE_S = 10.0
BATCH_SIZE_METRIC = "fusionserve_batch_size"


def _get(url: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except OSError:
        return 0, b""


@contextlib.contextmanager
def serving(
    name: str, port: int, env: dict[str, str], requests: RequestSet, log_path: Path
) -> Iterator[Server]:
    """A started server, answering /classify and ready in every worker (/readyz 200); its
    whole tree is stopped on leaving, whatever happened."""
    spec = SystemSpec(name, "fusionserve", name, port, env=env, start_timeout_s=READY_TIMEOUT_S)
    server = Server(spec, log_path)
    server.start()
    try:
        server.wait_ready(requests, 0)
        ready = procs.wait_until(lambda: _get(spec.base_url + "/readyz")[0] == 200, 60.0, 0.5)
        if not ready:
            raise ServerError(f"{name}: /readyz never 200: {server.log_tail()}")
        server.track()
        yield server
    finally:
        server.stop(grace_s=STOP_GRACE_S)


def info(server: Server) -> dict[str, Any]:
    """What /info says of how the bundle runs (one worker's answer): providers, execution."""
    status, body = _get(server.spec.base_url + "/info")
    if status != 200:
        return {"error": f"/info answered {status}"}
    answer = json.loads(body)
    return {"providers": answer.get("providers"), "execution": answer.get("execution")}


def batch_counts(server: Server) -> dict[str, float]:
    """The pod's batch-size histogram from /metrics: batches per ``le`` bucket (cumulative),
    summed over bundles; empty when /metrics cannot be read."""
    status, body = _get(server.spec.base_url + "/metrics")
    if status != 200:
        return {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name != BATCH_SIZE_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = sample.labels["le"]
                counts[le] = counts.get(le, 0.0) + sample.value
    return counts


def batches_formed(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """Batches per size range between two ``batch_counts`` readings: ``"3-4": 12`` means 12
    batches of 3 or 4 items (the histogram's buckets are powers of two)."""
    formed: dict[str, int] = {}
    previous_le, previous = 0.0, 0.0
    for le in sorted((key for key in after if key != "+Inf"), key=float):
        cumulative = after[le] - before.get(le, 0.0)
        count = int(round(cumulative - previous))
        low, high = int(previous_le) + 1, int(float(le))
        if count:
            formed[str(high) if low == high else f"{low}-{high}"] = count
        previous_le, previous = float(le), cumulative
    return formed


def measure(
    server: Server,
    requests: RequestSet,
    concurrency: int,
    duration_s: float,
    processes: int,
    max_requests: int | None = None,
) -> dict[str, Any]:
    """One closed-loop window: req/s, latencies, statuses, the load generator's CPU, the
    server tree's CPU per request and its share of the machine."""
    members = server.track()
    cpu_before = procs.cpu_seconds(members)
    load = closed_load(
        server.spec.base_url,
        requests,
        concurrency,
        duration_s,
        processes=processes,
        max_requests=max_requests,
    )
    server_cpu = procs.cpu_seconds(server.track()) - cpu_before
    summary = load.summary()
    ok = max(summary["ok"], 1)
    window = summary["window_s"] or duration_s
    return {
        "throughput_rps": summary["throughput_rps"],
        "latency_ms": summary["latency_ms"],
        "requests": summary["requests"],
        "ok": summary["ok"],
        "status_counts": summary["status_counts"],
        "concurrency": concurrency,
        "window_s": window,
        "server_cpu_ms_per_request": round(1000 * server_cpu / ok, 3),
        "server_cores_busy": round(server_cpu / window, 2),
        "machine_busy_cores": summary["machine_busy_cores"],
        "loadgen": summary["loadgen"],
    }
