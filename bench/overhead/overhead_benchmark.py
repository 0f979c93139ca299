"""The overhead-bound case in one run: FusionServe, LitServe, BentoML, Ray Serve and a
raw-ASGI floor serving the tiny bundle, at 64 closed-loop clients.

When the model costs nothing, what a server spends per request is its serving layer: HTTP,
body parsing, hand-offs between threads or processes, response building. Every system serves
``POST /classify`` on 127.0.0.1 from the tiny bundle (tests/support/tiny_bundle.py: random
ONNX encoders and head, 32x32 crops) with FusionServe's own decode and pipeline code (the
peers run bench/peers' server modules from their venvs, bench/harness/venvs.py); the floor
(bench/overhead/asgi_floor.py) reads the body and answers fixed JSON, no framework.

- FusionServe with its default settings: only the bundle path is set, plus what every
  system gets (bench.harness.servers.COMMON_ENV: inter-op threads 1, no spinning, device cpu,
  log level warning) and ONNX Runtime intra-op threads 1 (below).
- ONNX Runtime intra-op threads = 1 for every system: the tiny models' operators are far too
  small to split, so a second thread can only add wake-ups per batch; it is the same setting
  for all (the peers build their engine through the same Settings), and the one
  bench.overhead.request_overhead measures with, so the figures compare.

Per repeat, the systems in an order rotated by one (bench.harness.session.rotated): start,
wait for a real ``/classify``, warm up (``--warmup`` s closed loop), measure ``--duration`` s
with ``--concurrency`` clients, stop the whole process tree. In the window: 200s per second,
p50/p99 of the 200s, every status counted; server CPU per request = user + system CPU of the
server's whole process tree (/proc) between the window's start and end over the 200s
answered in it; the load generator's own CPU per request; CPU used by anything else.

    python -m bench.overhead.overhead_benchmark             # ~5 min on 2 cores
    python -m bench.overhead.overhead_benchmark --quick     # 1 repeat of 3 s, results/quick/

After the runs, FusionServe's CPU per request is split into the work one request needs and
the serving layer around it (bench.overhead.cpu_split).

Writes bench/results/overhead.json, then (unless ``--no-docs``) the "overhead" section of
docs/benchmarks.md and docs/img/overhead.png from the committed results.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.harness import procs, venvs
from bench.harness.loadgen import RunResult, closed_loop, run
from bench.harness.paths import output_dir
from bench.harness.payloads import TINY_TEXTS, RequestSet, tiny_requests
from bench.harness.servers import Server, ServerError, SystemSpec, peer_command
from bench.harness.session import LOCK, bench_lock, lock_held, logger, machine_info, rotated
from bench.overhead.cpu_split import measure_split
from bench.overhead.overhead_summary import summarize
from tests.support.tiny_bundle import make_tiny_bundle

RESULTS_NAME = "overhead.json"
INTRA_OP_THREADS = 1
PEERS = ("litserve", "bentoml", "ray")
DEFAULT_SYSTEMS = ("fusionserve", "litserve", "bentoml", "ray", "floor")
log = logger("overhead")


@dataclass(frozen=True)
class OverheadSpec(SystemSpec):
    """A system of this suite other than FusionServe: a peer's server module in its venv
    (``bench.harness.servers.peer_command``, as the peer benchmark starts them), or the floor
    in the main environment."""

    def command(self) -> list[str]:
        if self.name == "floor":
            return [self.python(), "-m", "bench.overhead.asgi_floor", "--port", str(self.port)]
        return peer_command(self.name, self.python(), self.port)


LABELS = {
    "fusionserve": "FusionServe (default settings)",
    "litserve": "LitServe 0.2.19",
    "bentoml": "BentoML 1.4.30",
    "ray": "Ray Serve 2.60",
    "floor": "raw ASGI floor (uvicorn, no framework)",
}


def system_specs(bundle: Path, base_port: int) -> dict[str, SystemSpec]:
    """Every system of the suite, serving ``bundle``, on ports from ``base_port`` on."""
    env = {"FUSIONSERVE_BUNDLE_PATH": str(bundle), "FUSIONSERVE_INTRA_OP_THREADS": "1"}
    specs: dict[str, SystemSpec] = {}
    for offset, key in enumerate(DEFAULT_SYSTEMS):
        port = base_port + offset
        if key == "fusionserve":
            specs[key] = SystemSpec(key, key, LABELS[key], port, env=env)
        else:
            specs[key] = OverheadSpec(
                key,
                key,
                LABELS[key],
                port,
                venv=key if key in PEERS else None,
                env=env,
                start_timeout_s=180.0 if key == "ray" else 120.0,
            )
    return specs


@dataclass(frozen=True)
class Plan:
    repeats: int = 3
    duration_s: float = 10.0
    warmup_s: float = 3.0
    concurrency: int = 64
    intra_op_threads: int = INTRA_OP_THREADS


async def _window(
    server: Server, requests: RequestSet, plan: Plan
) -> tuple[RunResult, dict[str, float]]:
    """The measured closed-loop run, with the server tree's, this process's (the load
    generator's) and everyone else's CPU read at its start and at its deadline."""
    members = server.track()
    other = procs.OtherCpu(members)
    server_before, client_before = procs.cpu_seconds(members), procs.own_cpu_seconds()

    async def at_deadline() -> dict[str, float]:
        await asyncio.sleep(plan.duration_s)
        now = server.track()  # a process started during the window counts whole
        return {
            "server_cpu_s": procs.cpu_seconds(now) - server_before,
            "client_cpu_s": procs.own_cpu_seconds() - client_before,
            "other_cpu_s": other.seconds(),
            "processes": float(len({pid for pid in now if procs.alive(pid)})),
        }

    result, cpu = await asyncio.gather(
        closed_loop(server.spec.base_url, requests, plan.concurrency, plan.duration_s),
        at_deadline(),
    )
    return result, cpu


def measure(spec: SystemSpec, requests: RequestSet, plan: Plan, log_path: Path) -> dict[str, Any]:
    """One system once: start, warm up, measure, stop."""
    server = Server(spec, log_path)
    server.start()
    try:
        startup_s = server.wait_ready(requests, 0)
        warmup = run(
            closed_loop(spec.base_url, requests, plan.concurrency, plan.warmup_s)
        ).summary()
        result, cpu = run(_window(server, requests, plan))
    finally:
        stopped = server.stop()
    summary = result.summary()
    ok = max(summary["ok"], 1)
    return {
        "startup_s": round(startup_s, 2),
        "warmup_status_counts": warmup["status_counts"],
        "throughput_rps": summary["throughput_rps"],
        "latency_ms": summary["latency_ms"],
        "requests": summary["requests"],
        "status_counts": summary["status_counts"],
        "cpu_ms_per_request": round(1000 * cpu["server_cpu_s"] / ok, 3),
        "server_cpu_s": round(cpu["server_cpu_s"], 2),
        "client_cpu_ms_per_request": round(1000 * cpu["client_cpu_s"] / ok, 3),
        "other_cpu_s": cpu["other_cpu_s"],
        "processes": int(cpu["processes"]),
        "stop": stopped,
    }


def _request_info(requests: RequestSet) -> dict[str, Any]:
    body = requests.body(0)
    return {
        "image": "64x64 JPEG of seeded noise",
        "image_bytes": len(requests.images[0].data),
        "texts": len(TINY_TEXTS),
        "body_bytes": len(body),
    }


def _uvicorn_choices() -> dict[str, str]:
    """What uvicorn's "auto" resolves to in the main environment (FusionServe and the floor)."""
    return {
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
    }


def execute(plan: Plan, systems: Sequence[str], out: Path, base_port: int) -> dict[str, Any]:
    started, wall = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.monotonic()
    peers = [key for key in systems if key in PEERS]
    for name in peers:
        venvs.ensure(name, log=out / "logs" / f"venv-{name}.log")
    requests = tiny_requests()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        bundle = make_tiny_bundle(Path(folder) / "tiny")
        specs = system_specs(bundle, base_port)
        for repeat in range(plan.repeats):
            for position, key in enumerate(rotated(list(systems), repeat)):
                record: dict[str, Any] = {"system": key, "repeat": repeat, "position": position}
                log_path = out / "logs" / f"overhead-{key}.log"
                try:
                    record |= measure(specs[key], requests, plan, log_path)
                except ServerError as exc:
                    record["error"] = str(exc)[-2000:]
                    log(f"r{repeat} {key}: FAILED {str(exc)[:300]}")
                else:
                    log(
                        f"r{repeat} {key}: {record['throughput_rps']} req/s, p50/p99 "
                        f"{record['latency_ms']['p50']}/{record['latency_ms']['p99']} ms, "
                        f"server CPU {record['cpu_ms_per_request']} ms/request, statuses "
                        f"{record['status_counts']} (warm-up {record['warmup_status_counts']}),"
                        f" other CPU {record['other_cpu_s']} s"
                    )
                runs.append(record)
        split = measure_split(bundle, requests) if "fusionserve" in systems else None
    return {
        "started": started,
        "wall_s": round(time.monotonic() - wall, 1),
        "machine": machine_info(peers) | {"uvicorn_main": _uvicorn_choices()},
        "plan": asdict(plan),
        "request": _request_info(requests),
        "bundle": "`tests/support/tiny_bundle.py`: random ONNX encoders and head, 32x32 crops",
        "systems": {
            key: {"label": LABELS[key], "env": {"FUSIONSERVE_INTRA_OP_THREADS": "1"}}
            for key in systems
        },
        "runs": runs,
        "summary": summarize(runs, systems),
        "cpu_split": split,
    }


def summary_lines(results: dict[str, Any]) -> list[str]:
    s = results["summary"]
    lines = []
    for key, system in s["systems"].items():
        lines.append(
            f"{key}: {system['throughput_rps']['median']} req/s, p50/p99 "
            f"{system['p50_ms']['median']}/{system['p99_ms']['median']} ms, server CPU "
            f"{system['cpu_ms_per_request']['median']} ms/request, 503: {system['503']} "
            f"(warm-up {system['503_warmup']}), other non-200: {system['other_non_200']}, "
            f"failed runs: {system['failed']}"
        )
    lines += [f"{t['name']} {t['bound']}: {t['value']} -> {t['verdict']}" for t in s["targets"]]
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead.overhead_benchmark",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat, 3 s runs, results/quick/")
    parser.add_argument("--repeats", type=int, help="default 3 (quick: 1)")
    parser.add_argument("--duration", type=float, help="measured seconds (default 10; quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds (default 3; quick 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop clients")
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated subset of {','.join(DEFAULT_SYSTEMS)}",
    )
    parser.add_argument("--port", type=int, default=8141, help="first of five ports")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="do not rewrite docs/benchmarks.md's overhead section and docs/img/overhead.png",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    systems = [key.strip() for key in args.systems.split(",") if key.strip()]
    unknown = sorted(set(systems) - set(DEFAULT_SYSTEMS))
    if unknown or not systems:
        print(f"unknown systems {unknown}; choose from {DEFAULT_SYSTEMS}", file=sys.stderr)
        return 2
    quick = args.quick
    plan = Plan(
        repeats=args.repeats or (1 if quick else 3),
        duration_s=args.duration or (3.0 if quick else 10.0),
        warmup_s=args.warmup or (1.0 if quick else 3.0),
        concurrency=args.concurrency,
    )
    if lock_held():
        print(f"{LOCK} exists: another benchmark is running; try later", file=sys.stderr)
        return 2
    out = output_dir(args.out, quick)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m bench.overhead.overhead_benchmark", *(argv or sys.argv[1:])])
    with bench_lock(command):
        results = execute(plan, systems, out, args.port)
    results = {"command": command, **results}
    path = out / RESULTS_NAME
    path.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(summary_lines(results)))
    log(f"wrote {path} in {results['wall_s'] / 60:.1f} min")
    if not args.no_docs:  # from the committed results: a run written elsewhere changes nothing
        from bench.overhead.overhead_doc import write_docs  # matplotlib: only when drawing

        log(f"docs/benchmarks.md sections rewritten: {write_docs() or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
