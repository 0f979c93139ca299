"""The peer benchmark in one command:
``python -m bench.peers.peer_benchmark [--repeats 3] [--quick]``.

Per repeat: (c) the in-process limit; a FusionServe (batching) calibration run whose
saturation throughput fixes the repeat's open-loop rate (70% of it, the same absolute rate
for every system); then every system in an order rotated by the repeat number: start, wait
until a real request succeeds, check its answers against the in-process reference (first
repeat), warm up, closed-loop saturation, open-loop at the common rate, single client, stop
(whole process tree, port free). After the repeats: FusionServe overload at 2x its median
saturation. Writes results JSON (summarised by bench.peers.peer_summary), docs/benchmarks.md and
its figure (bench.peers.benchmarks_doc), and the replica-sizing section of deploy/README.md from
the committed results (bench.peers.sizing_doc); ``--no-docs`` skips the docs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.harness import procs, venvs
from bench.harness.loadgen import (
    classify_each,
    open_loop,
    run,
    saturation_run,
    single_run,
    warmup_run,
)
from bench.harness.paths import REPO_ROOT, output_dir
from bench.harness.payloads import RequestSet, build_requests, describe_requests
from bench.harness.servers import COMMON_ENV, Server, ServerError, SystemSpec
from bench.harness.session import bench_lock, git_head, logger, machine_info, rotated
from bench.harness.statistics import median
from bench.peers import sizing_doc
from bench.peers.benchmarks_doc import summary_table, targets_table, write_docs
from bench.peers.peer_summary import summarize
from bench.peers.systems import BASELINE, SYSTEMS, baseline_spec

AGREEMENT_TOLERANCE = 1e-4
AGREEMENT_COUNT = 48  # one request per image


@dataclass(frozen=True)
class Plan:
    repeats: int
    systems: list[str]
    concurrency: int = 32
    warmup_s: float = 5.0
    saturation_s: float = 20.0
    open_s: float = 20.0
    single_s: float = 10.0
    overload_s: float = 60.0
    overload_settle_s: float = 10.0
    inprocess_s: float = 8.0
    open_fraction: float = 0.7
    overload_factor: float = 2.0

    @classmethod
    def quick(cls, repeats: int, systems: list[str]) -> Plan:
        return cls(
            repeats,
            systems,
            warmup_s=3.0,
            saturation_s=8.0,
            open_s=8.0,
            single_s=4.0,
            overload_s=15.0,
            overload_settle_s=10.0,
            inprocess_s=3.0,
        )


log = logger("bench")


def _python_in_main(*args: str) -> str:
    """Run ``python -m ...`` in the main venv with the common ORT settings; return stdout."""
    result = subprocess.run(
        [sys.executable, "-m", *args],
        env={**os.environ, **COMMON_ENV},
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def reference(requests: RequestSet) -> dict[int, list[float]]:
    start = len(requests) - AGREEMENT_COUNT
    out = json.loads(
        _python_in_main("bench.harness.inprocess", "--reference", str(start), str(len(requests)))
    )
    return dict(zip(out["indices"], out["probabilities"], strict=True))


def agreement(
    spec: SystemSpec, requests: RequestSet, ref: dict[int, list[float]]
) -> dict[str, Any]:
    """Max |p_system - p_reference| over every class of the reference requests."""
    indices = sorted(ref)
    answers = run(classify_each(spec.base_url, requests, indices))
    labels = _labels()
    worst = 0.0
    for index, answer in zip(indices, answers, strict=True):
        got = {p["label"]: p["probability"] for p in answer["predictions"]}
        # Reference rows follow the bundle's label order; answers are sorted by probability.
        expected = dict(zip(labels, ref[index], strict=True))
        worst = max(worst, max(abs(got[label] - p) for label, p in expected.items()))
    return {"requests": len(indices), "max_abs_diff": worst, "ok": worst <= AGREEMENT_TOLERANCE}


def _labels() -> list[str]:
    manifest = json.loads((REPO_ROOT / "models" / "default" / "manifest.json").read_text())
    labels: list[str] = manifest["labels"]
    return labels


def inprocess(plan: Plan, out_dir: Path, repeat: int) -> dict[str, Any]:
    path = out_dir / f"inprocess-{repeat}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, started = procs.busy_cpu_seconds(), time.monotonic()
    _python_in_main(
        "bench.harness.inprocess", "--duration", str(plan.inprocess_s), "--json", str(path)
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result: dict[str, Any] = json.loads(path.read_text())
    # CPU used by other processes while it ran (contention would lower the limit).
    result["other_cpu_s"] = round(procs.busy_cpu_seconds() - busy - own, 2)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


class PeerSession:
    """One benchmark session: the plan, the request set, the reference and the raw runs."""

    def __init__(self, plan: Plan, out_dir: Path) -> None:
        self.plan = plan
        self.out_dir = out_dir
        self.requests = build_requests()
        self.ref: dict[int, list[float]] = {}
        self.raw: dict[str, Any] = {"inprocess": [], "calibration": [], "systems": []}

    def _server(self, spec: SystemSpec, tag: str) -> Server:
        return Server(spec, self.out_dir / "logs" / f"{tag}-{spec.name}.log")

    def _start(self, server: Server) -> float:
        server.start()
        # The probe uses a reference request: not one the load runs would send.
        return server.wait_ready(self.requests, max(self.ref) if self.ref else 0)

    def _warm(self, spec: SystemSpec) -> dict[str, Any]:
        return warmup_run(spec.base_url, self.requests, self.plan).summary()

    def _saturation(self, spec: SystemSpec) -> dict[str, Any]:
        return saturation_run(spec.base_url, self.requests, self.plan).summary()

    def _saturation_cpu(
        self, spec: SystemSpec, server: Server
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """Saturation, plus the CPU the server tree and this (client) process used in it."""
        members = server.track()
        server_cpu, client_cpu = procs.cpu_seconds(members), time.process_time()
        busy = procs.busy_cpu_seconds()
        summary = self._saturation(spec)
        server_cpu = procs.cpu_seconds(members) - server_cpu
        client_cpu = time.process_time() - client_cpu
        # CPU used by anything else on the machine meanwhile: should be ~0 for a clean run.
        other_cpu = procs.busy_cpu_seconds() - busy - server_cpu - client_cpu
        ok = max(int(summary["ok"]), 1)
        return summary, {
            "server_cpu_s": round(server_cpu, 2),
            "client_cpu_s": round(client_cpu, 2),
            "server_cpu_ms_per_ok": round(server_cpu * 1000 / ok, 3),
            "client_cpu_ms_per_ok": round(client_cpu * 1000 / ok, 3),
            "other_cpu_s": round(other_cpu, 2),
            "cpu_utilisation": round(
                (server_cpu + client_cpu) / self.plan.saturation_s / (os.cpu_count() or 1), 3
            ),
        }

    def calibrate(self, repeat: int) -> float:
        """FusionServe's first saturation measure of the repeat; returns the open-loop rate."""
        spec = SYSTEMS["a"]
        server = self._server(spec, f"r{repeat}-calibration")
        record: dict[str, Any] = {"repeat": repeat}
        try:
            record["startup_s"] = round(self._start(server), 2)
            self._warm(spec)
            record["saturation"] = self._saturation(spec)
        finally:
            record["stop"] = server.stop()
        rate = self.plan.open_fraction * float(record["saturation"]["throughput_rps"])
        record["open_rate_rps"] = round(rate, 3)
        self.raw["calibration"].append(record)
        log(
            f"calibration: FusionServe saturation {record['saturation']['throughput_rps']} rps"
            f" -> open-loop rate {rate:.2f} rps"
        )
        return rate

    def measure(self, spec: SystemSpec, repeat: int, position: int, rate: float) -> None:
        record: dict[str, Any] = {
            "system": spec.key,
            "name": spec.name,
            "repeat": repeat,
            "position": position,
            "open_rate_rps": round(rate, 3),
        }
        server = self._server(spec, f"r{repeat}")
        p = self.plan
        try:
            record["startup_s"] = round(self._start(server), 2)
            if repeat == 0:
                record["agreement"] = agreement(spec, self.requests, self.ref)
            record["warmup"] = self._warm(spec)
            record["rss_kib_after_warmup"] = server.rss_kib()
            record["saturation"], record["saturation_cpu"] = self._saturation_cpu(spec, server)
            record["open"] = run(
                open_loop(spec.base_url, self.requests, rate, p.open_s, seed=repeat)
            ).summary()
            record["single"] = single_run(spec.base_url, self.requests, p).summary()
            record["rss_kib_end"] = server.rss_kib()
            record["alive_at_end"] = server.alive()
        except (ServerError, RuntimeError, OSError) as exc:
            record["error"] = repr(exc)[:2000]
            log(f"{spec.name}: ERROR {exc!r}"[:500])
        finally:
            record["stop"] = server.stop()
        self.raw["systems"].append(record)
        log(_one_line(record))

    def overload(self, saturation_rps: float) -> dict[str, Any]:
        """FusionServe (batching) at ``overload_factor`` x its saturation, open loop."""
        spec = SYSTEMS["a"]
        p = self.plan
        rate = p.overload_factor * saturation_rps
        record: dict[str, Any] = {"rate_rps": round(rate, 3), "duration_s": p.overload_s}
        server = self._server(spec, "overload")
        try:
            record["startup_s"] = round(self._start(server), 2)
            record["warmup"] = self._warm(spec)
            record["rss_kib_after_warmup"] = server.rss_kib()
            record["run"] = run(
                open_loop(spec.base_url, self.requests, rate, p.overload_s, seed=99)
            ).summary()
            record["rss_kib_end"] = server.rss_kib()
            time.sleep(p.overload_settle_s)
            record["rss_kib_settled"] = server.rss_kib()
            record["settle_s"] = p.overload_settle_s
            record["alive_at_end"] = server.alive()
        finally:
            record["stop"] = server.stop()
        self.raw["overload"] = record
        return record


def _one_line(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['name']} r{record['repeat']}: error"
    sat, opn, single = record["saturation"], record["open"], record["single"]
    return (
        f"{record['name']} r{record['repeat']}: saturation {sat['throughput_rps']} rps "
        f"(p99 {sat['latency_ms']['p99']} ms), open@{record['open_rate_rps']} p99 "
        f"{opn['latency_ms']['p99']} ms {opn['status_counts']}, single p50 "
        f"{single['latency_ms']['p50']} ms"
    )


def _app_digest() -> str:
    """Hash of app/ as it is on disk (servers start from the working tree, edits included)."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "app").rglob("*.py")):
        digest.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def execute(plan: Plan, out_dir: Path) -> dict[str, Any]:
    started = time.time()
    commit_at_start, app_at_start = git_head(), _app_digest()
    for key in plan.systems:
        if SYSTEMS[key].venv:
            venvs.ensure(SYSTEMS[key].venv or "", log=out_dir / "venvs.log")
    session = PeerSession(plan, out_dir)
    log("computing the in-process reference probabilities")
    session.ref = reference(session.requests)
    for repeat in range(plan.repeats):
        log(f"repeat {repeat + 1}/{plan.repeats}: in-process limit")
        session.raw["inprocess"].append(inprocess(plan, out_dir, repeat))
        log(f"in-process best {session.raw['inprocess'][-1]['best_items_per_s']} items/s")
        rate = session.calibrate(repeat)
        for position, key in enumerate(rotated(plan.systems, repeat)):
            session.measure(SYSTEMS[key], repeat, position, rate)
    if "a" in plan.systems and plan.overload_s > 0:
        sats = [
            r["saturation"]["throughput_rps"]
            for r in session.raw["systems"]
            if r["system"] == "a" and "saturation" in r
        ]
        log(f"overload: {plan.overload_factor}x the median saturation for {plan.overload_s} s")
        session.overload(median(sats, digits=None))
    machine = machine_info(venv for key in plan.systems if (venv := SYSTEMS[key].venv))
    # The service code may change while a session runs (servers start from the working tree).
    machine["git_commit_at_start"] = commit_at_start
    machine["app_digest_at_start"] = app_at_start
    machine["app_digest_at_end"] = _app_digest()
    machine["app_changed_during_run"] = app_at_start != machine["app_digest_at_end"]
    return {
        "plan": asdict(plan),
        "machine": machine,
        "requests": describe_requests(session.requests),
        "systems": {k: {"name": SYSTEMS[k].name, "label": SYSTEMS[k].label} for k in plan.systems},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "raw": session.raw,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.peer_benchmark", description=__doc__
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--systems",
        default="a,b,d,e,f",
        help="keys: a,b (FusionServe), w (FusionServe, 2 workers), d (LitServe), e (BentoML), "
        "f (Ray Serve), z (FusionServe at --baseline-root)",
    )
    parser.add_argument(
        "--baseline-root",
        type=Path,
        help="a checkout of another commit (git worktree) to run as system z beside this one",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default: bench/results, or bench/results/quick with --quick)",
    )
    parser.add_argument("--overload-s", type=float, help="overload duration (0 skips it)")
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="skip docs/benchmarks.md + plot and the sizing section of deploy/README.md",
    )
    args = parser.parse_args()
    systems = [k.strip() for k in args.systems.split(",") if k.strip()]
    if args.baseline_root is not None:
        SYSTEMS[BASELINE] = baseline_spec(args.baseline_root.resolve())
    if unknown := [k for k in systems if k not in SYSTEMS]:
        parser.error(f"unknown systems {unknown}")
    plan = Plan.quick(args.repeats, systems) if args.quick else Plan(args.repeats, systems)
    if args.overload_s is not None:
        plan = replace(plan, overload_s=args.overload_s)
    out_dir = output_dir(args.out, args.quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Tells other heavy work on this machine (the lead's test runs) to wait: timings share it.
    with bench_lock(" ".join(sys.argv)):
        results = execute(plan, out_dir)
        results["command"] = " ".join(["python -m bench.peers.peer_benchmark", *sys.argv[1:]])
        results["summary"] = summarize(results)
        path = out_dir / "results.json"
        path.write_text(json.dumps(results, indent=2))
        log(f"wrote {path} (session took {results['wall_s'] / 60:.1f} min)")
        if not args.no_docs and not args.quick:
            write_docs(results)
            # From the committed results: a run with --out elsewhere changes nothing there.
            try:
                log(f"deploy/README.md: rewrote {sizing_doc.write_docs() or 'nothing'}")
            except sizing_doc.SizingError as exc:  # e.g. a session without FusionServe (a)
                log(f"deploy/README.md: sizing section left as it was ({exc})")
        labels = {k: v["label"] for k, v in results["systems"].items()}
        print(summary_table(results["summary"], labels))
        print(targets_table(results["summary"]))


if __name__ == "__main__":
    main()
