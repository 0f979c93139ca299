"""The ``replica-sizing`` section of deploy/README.md (Size a cluster), rendered from the
committed results: FusionServe (batching) in the peer benchmark, bench/results/results.json
(``summary.systems.a`` and its runs in ``raw.systems``), the soak runs
(bench/results/soak.json, soak-repeated-texts.json) and the CPU replica's resource requests in
deploy/base/deployment.yaml, which the worked example multiplies.

``python -m bench.peers.sizing_doc`` rewrites that section without re-running anything;
``--check`` changes nothing and exits 1 when it is stale. ``bench.peers.peer_benchmark`` does
the same after a run unless ``--no-docs`` (from the committed results: a run with ``--out``
elsewhere changes nothing there).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness.generated_docs import GeneratedDoc
from bench.harness.paths import REPO_ROOT, RESULTS_DIR, read_results
from bench.harness.procs import MB

DOC = REPO_ROOT / "deploy" / "README.md"
SECTION = "replica-sizing"
PEER_RESULTS = RESULTS_DIR / "results.json"
DEPLOYMENT = REPO_ROOT / "deploy" / "base" / "deployment.yaml"
# The committed soak runs (bench/soak/soak_benchmark.py's results; a suite imports no other
# suite, so named here: tests/docs checks they are the soak section's runs).
SOAK_RUNS = ("soak.json", "soak-repeated-texts.json")
FUSIONSERVE = "a"  # FusionServe with its default settings, in the peer benchmark's results
EXAMPLE_PEAK_RPS = 400  # the worked example's peak load: an example, not a measurement
MiB, GiB = 2**20, 2**30
_MEMORY_UNITS = {"Ki": 2**10, "Mi": MiB, "Gi": GiB, "k": 10**3, "M": 10**6, "G": 10**9}


class SizingError(ValueError):
    """The results or the Deployment do not give what the section needs."""


@dataclass(frozen=True)
class Requests:
    """A replica's resource requests: CPU cores and memory in GiB (2^30 bytes)."""

    cores: float
    memory_gib: float


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity (``2``, ``"1.5"``, ``1500m``) in cores."""
    quantity = quantity.strip().strip("\"'")
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_gib(quantity: str) -> float:
    """A Kubernetes memory quantity (``1Gi``, ``768Mi``, ``2G``, bytes) in GiB."""
    quantity = quantity.strip().strip("\"'")
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i|[kMG])?", quantity)
    if found is None:
        raise SizingError(f"unknown memory quantity {quantity!r}")
    number, unit = found.groups()
    return float(number) * (_MEMORY_UNITS[unit] if unit else 1) / GiB


def replica_requests(manifest: str) -> Requests:
    """The first ``requests:`` block of a Deployment's YAML text (its container's), read as
    ``key: value`` lines indented under it."""
    lines = manifest.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != "requests:":
            continue
        indent = len(line) - len(line.lstrip())
        values: dict[str, str] = {}
        for inner in lines[index + 1 :]:
            if inner.strip() and len(inner) - len(inner.lstrip()) <= indent:
                break
            key, _, value = inner.strip().partition(":")
            if value.strip():
                values[key] = value.split("#")[0].strip()
        if "cpu" not in values or "memory" not in values:
            raise SizingError(f"the requests block has no cpu and memory: {values}")
        return Requests(cpu_cores(values["cpu"]), memory_gib(values["memory"]))
    raise SizingError("no requests: block in the Deployment")


def _runs(peers: dict[str, Any]) -> list[dict[str, Any]]:
    """FusionServe's (a) completed runs, one per repeat."""
    runs = [r for r in peers["raw"]["systems"] if r["system"] == FUSIONSERVE and "error" not in r]
    if not runs:
        raise SizingError("the peer results hold no completed FusionServe (a) run")
    return runs


def _span(values: Sequence[float], digits: int) -> str:
    """``low-high`` at ``digits`` decimals, or the one value when both read alike."""
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}-{high}"


def per_replica_rps(peers: dict[str, Any]) -> int:
    """The rate one replica is planned for: the benchmark's open-loop share of FusionServe's
    median saturation rate (70%, the share at which its p99 was measured), rounded down to a
    whole request per second."""
    share = float(peers["plan"]["open_fraction"])
    rate = math.floor(share * float(peers["summary"]["systems"][FUSIONSERVE]["saturation_rps"]))
    if rate < 1:
        raise SizingError("a replica's planned rate is under one request per second")
    return rate


def replicas_for(peak_rps: float, rate_rps: int) -> int:
    """Replicas for ``peak_rps``: enough at ``rate_rps`` each, plus one spare."""
    return math.ceil(peak_rps / rate_rps) + 1


def _table(peers: dict[str, Any], soaks: Mapping[str, dict[str, Any]]) -> list[str]:
    ours, runs = peers["summary"]["systems"][FUSIONSERVE], _runs(peers)
    share = f"{peers['plan']['open_fraction']:.0%}"
    saturation = [r["saturation"]["throughput_rps"] for r in runs]
    p99_s = [r["open"]["latency_ms"]["p99"] / 1000 for r in runs]
    single = [r["single"]["latency_ms"]["p50"] for r in runs]
    warm_mb = [r["rss_kib_after_warmup"]["tree"] * 1024 / MB for r in runs]
    startup = [r["startup_s"] for r in runs]
    soak_mb = [sample[1] / MB for soak in soaks.values() for sample in soak["rss_samples"]]
    soak_minutes = [soak["duration_s"] / 60 for soak in soaks.values()]
    soak_rates = [soak["rate_rps"] for soak in soaks.values()]
    soak_startup = [soak["startup_s"] for soak in soaks.values()]
    return [
        f"| One {peers['machine']['nproc']}-core CPU replica | Measured (recorded run of "
        f"{peers['started'][:10]}, medians of {len(runs)}) |",
        "| --- | --- |",
        f"| Throughput at saturation | {ours['saturation_rps']:.1f} requests/s "
        f"({_span(saturation, 1)} by repeat; one image + text each) |",
        f"| p99 latency at {share} of saturation ({_span(peers['summary']['open_rate_rps'], 0)} "
        f"requests/s) | {ours['open_p99_ms'] / 1000:.2f} s ({_span(p99_s, 2)} by repeat) |",
        f"| One request alone | {ours['single_p50_ms']:.0f} ms median ({_span(single, 0)} by "
        "repeat) |",
        f"| Resident memory | {ours['rss_mib_tree'] * MiB / MB:.0f} MB after warm-up "
        f"({_span(warm_mb, 0)} by repeat); {_span(soak_mb, 0)} MB under a "
        f"{_span(soak_minutes, 0)}-minute soak at {_span(soak_rates, 0)} requests/s "
        f"({len(soaks)} runs) |",
        f"| Start-up, process started to ready (load + warm-up) | {ours['startup_s']:.1f} s "
        f"median ({_span(startup, 1)} by repeat); {_span(soak_startup, 1)} s in the soak runs |",
    ]


def render(peers: dict[str, Any], soaks: Mapping[str, dict[str, Any]], requests: Requests) -> str:
    """The section: what the peer benchmark (``peers``, a results.json) and the soak runs
    (results file name -> results) measured of one CPU replica, and the replica count, cores
    and memory (``requests``: the Deployment's, per replica) for an example peak load."""
    if FUSIONSERVE not in peers["summary"]["systems"]:
        raise SizingError(f"the peer results have no system {FUSIONSERVE!r} (FusionServe)")
    nproc = peers["machine"]["nproc"]
    soak_links = " and ".join(f"[{name}](../bench/results/{name})" for name in soaks)
    rate = per_replica_rps(peers)
    replicas = replicas_for(EXAMPLE_PEAK_RPS, rate)
    saturation = float(peers["summary"]["systems"][FUSIONSERVE]["saturation_rps"])
    share = float(peers["plan"]["open_fraction"])
    lines = [
        "Measured by the benchmark in [docs/benchmarks.md](../docs/benchmarks.md) (default "
        f"bundle, CPU, one server on {nproc} cores, the load generator sharing those cores): "
        f"{peers['systems'][FUSIONSERVE]['label']} in "
        "[bench/results/results.json](../bench/results/results.json) (`summary.systems."
        f"{FUSIONSERVE}`, and its runs in `raw.systems` for the spread by repeat), and the "
        f"`rss_samples` and `startup_s` of the soak runs in {soak_links}.",
        "",
        *_table(peers, soaks),
        "",
        "So, for a CPU cluster:",
        "",
        f"- **Replicas** = peak requests/s ÷ {rate} (the HPA's target of {share:.0%} of the "
        f"saturation rate: {saturation:.1f} x {share:g} = {round(saturation * share, 2):g}, "
        "rounded down), rounded up, plus one so that a lost node or a rollout does not push "
        f"the rest into overload. {EXAMPLE_PEAK_RPS} requests/s: {replicas - 1} + 1 = "
        f"{replicas} replicas, {replicas * requests.cores:g} cores and "
        f"{replicas * requests.memory_gib:g} GiB of requests ({requests.cores:g} cores and "
        f"{requests.memory_gib:g} GiB each, [base/deployment.yaml](base/deployment.yaml)), "
        f"`maxReplicas` at least {replicas}.",
    ]
    if requests.cores != nproc:
        lines.append(
            f"- The Deployment requests {requests.cores:g} cores per replica, but the replica "
            f"above was measured on {nproc}: measure the new size before sizing with it."
        )
    return "\n".join(lines)


def committed_sections(
    results_dir: Path = RESULTS_DIR, deployment: Path = DEPLOYMENT
) -> dict[str, str]:
    """The replica-sizing section of deploy/README.md, from the results under
    ``results_dir`` and the requests in ``deployment``."""
    peers = read_results(results_dir / PEER_RESULTS.name)
    soaks = {name: read_results(results_dir / name) for name in SOAK_RUNS}
    requests = replica_requests(deployment.read_text(encoding="utf-8"))
    return {SECTION: render(peers, soaks, requests)}


GENERATED = GeneratedDoc(
    "python -m bench.peers.sizing_doc", (__doc__ or "").split("\n\n")[0], DOC, committed_sections
)
write_docs = GENERATED.write  # the suite's runner calls it after a run

if __name__ == "__main__":
    raise SystemExit(GENERATED.main())
