"""Soak test: memory growth of a FusionServe process under a steady load.

Starts ``fusionserve serve`` on the default bundle, warms it up at the soak rate, records
its resident memory (VmRSS of the whole process tree, from /proc), then sends open-loop
Poisson arrivals at a steady rate (default about 60% of the 2-core saturation throughput in
docs/benchmarks.md) for ``--duration`` seconds, sampling RSS every ``--interval`` seconds.
Reports the warmed-up, peak and final RSS and the growth after warm-up, which passes under
``--bar-mb`` (50 MB, as Triton's L0_memory_growth bounds its own), and writes the figures
and every sample to a JSON file.

Every request carries a text never sent before (bench/harness/payloads.py), so the text-embedding
LRU cache fills during the soak: bounded growth, by design, that counts against the bar.
Its size is reported at both ends; ``--texts 500`` cycles a small pool instead, which the
warm-up puts entirely in the cache.

    python -m bench.soak.soak_benchmark --duration 300 --rate 34

Writes bench/results/soak.json, then, unless ``--no-docs``, rewrites the soak section of
docs/operations.md from the committed results (bench.soak.soak_doc). While it runs,
/tmp/fusionserve-bench.lock exists (as for the other suites): other heavy work on the machine
should wait, since the load generator and the server share its cores; it refuses to start
while another benchmark holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.loadgen import RunResult, open_loop, run
from bench.harness.paths import RESULTS_DIR
from bench.harness.payloads import RequestSet, build_requests
from bench.harness.procs import MB
from bench.harness.servers import Server, SystemSpec
from bench.harness.session import LOCK, bench_lock, lock_held, machine_brief
from bench.soak.soak_doc import TEXTS, write_docs

RESULTS = RESULTS_DIR / "soak.json"


def _rss_bytes(server: Server) -> int:
    return server.rss_kib()["tree"] * 1024


def _cache_entries(server: Server) -> int:
    with urllib.request.urlopen(f"{server.spec.base_url}/info", timeout=10) as response:
        stats = json.load(response)["stats"]
    entries: int = stats["text_cache"]["size"]
    return entries


async def _sample_rss(server: Server, interval_s: float, stop: asyncio.Event) -> list[list[float]]:
    """[seconds since start, RSS bytes] every ``interval_s`` until ``stop`` is set."""
    samples: list[list[float]] = []
    start = time.monotonic()
    while True:
        samples.append([round(time.monotonic() - start, 2), _rss_bytes(server)])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            samples.append([round(time.monotonic() - start, 2), _rss_bytes(server)])
            return samples


async def _soak(
    server: Server, requests: RequestSet, rate: float, duration_s: float, interval_s: float
) -> tuple[RunResult, list[list[float]]]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(server, interval_s, stop))
    try:
        result = await open_loop(server.spec.base_url, requests, rate, duration_s, seed=7)
    finally:
        stop.set()
    return result, await sampler


def _figures(samples: list[list[float]], bar_mb: float) -> dict[str, Any]:
    rss = np.array([s[1] for s in samples]) / MB
    seconds = np.array([s[0] for s in samples])
    warm, peak, end = float(rss[0]), float(rss.max()), float(rss[-1])
    # Least-squares trend over the soak: a leak shows as a steady slope, noise does not.
    slope = float(np.polyfit(seconds, rss, 1)[0]) * 60 if len(samples) > 2 else 0.0
    growth = end - warm
    return {
        "warm_rss_mb": round(warm, 1),
        "peak_rss_mb": round(peak, 1),
        "end_rss_mb": round(end, 1),
        "growth_mb": round(growth, 1),
        "peak_growth_mb": round(peak - warm, 1),
        "trend_mb_per_min": round(slope, 2),
        "bar_mb": bar_mb,
        "passed": growth < bar_mb,
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    requests = build_requests(texts=args.texts)
    spec = SystemSpec("soak", "fusionserve", "FusionServe (soak)", args.port)
    log_path = args.out.parent / "logs" / "soak-server.log"
    server = Server(spec, log_path)
    server.start()
    try:
        startup_s = server.wait_ready(requests, requests.next_index())
        print(f"server ready in {startup_s:.1f} s; warming up for {args.warmup:.0f} s")
        warmup = run(open_loop(spec.base_url, requests, args.rate, args.warmup, seed=3))
        cache_start = _cache_entries(server)
        print(f"soak: {args.rate} req/s for {args.duration:.0f} s, RSS every {args.interval} s")
        result, samples = run(_soak(server, requests, args.rate, args.duration, args.interval))
        cache_end = _cache_entries(server)
        alive = server.alive()
    finally:
        stop = server.stop()
    return {
        "command": " ".join(["python -m bench.soak.soak_benchmark", *sys.argv[1:]]),
        "machine": machine_brief(),
        "rate_rps": args.rate,
        "texts": args.texts,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "startup_s": round(startup_s, 2),
        "memory": _figures(samples, args.bar_mb),
        "text_cache_entries": {"start": cache_start, "end": cache_end},
        "server_alive_at_end": alive,
        "stop": stop,
        "warmup_load": warmup.summary(),
        "load": result.summary(),
        "rss_samples": samples,
    }


def _report(results: dict[str, Any]) -> str:
    memory, load = results["memory"], results["load"]
    verdict = "PASS" if memory["passed"] else "FAIL"
    lines = [
        f"{verdict}: RSS growth after warm-up {memory['growth_mb']} MB (bar {memory['bar_mb']} MB)",
        f"  warmed up {memory['warm_rss_mb']} MB, peak {memory['peak_rss_mb']} MB, "
        f"end {memory['end_rss_mb']} MB, trend {memory['trend_mb_per_min']} MB/min",
        f"  text cache entries {results['text_cache_entries']}",
        f"  {load['requests']} requests, {load['throughput_rps']} req/s answered, "
        f"statuses {load['status_counts']}, latency ms {load['latency_ms']}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak.soak_benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=34.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=300.0, help="soak seconds")
    parser.add_argument("--warmup", type=float, default=30.0, help="warm-up seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--bar-mb", type=float, default=50.0, help="allowed growth, MB")
    parser.add_argument("--texts", type=int, default=TEXTS, help="distinct texts, cycled")
    parser.add_argument("--port", type=int, default=8111)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/operations.md's soak section"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if lock_held():
        print(f"{LOCK} exists: another benchmark is running; try later", file=sys.stderr)
        return 2
    with bench_lock(" ".join(sys.argv)):
        results = soak(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(_report(results))
    print(f"wrote {args.out}")
    if not args.no_docs:  # from the committed results: a run written elsewhere changes nothing
        print(f"docs/operations.md sections rewritten: {write_docs() or 'none'}")
    return 0 if results["memory"]["passed"] and results["server_alive_at_end"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
