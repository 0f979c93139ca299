"""Decode memory: a server's resident memory under bursts of near-cap uploads, and what
decoding a normal photo costs; this checkout against a baseline checkout, in one run.

For each checkout (``--baseline-root``, e.g. a ``git worktree`` of the commit before a change,
then this one) a ``fusionserve serve`` process on the default bundle with default settings
(device cpu, ONNX Runtime threads = cores, as in deploy/) gets, after a warm-up, bursts of
N concurrent uploads of the same near-cap file (``bench.memory.near_cap_images``: every format, N in
``--concurrency``). The RSS of its process tree is sampled every 50 ms from /proc during each
burst and for ``--settle-s`` seconds after its last answer. Reported per burst: statuses, peak
RSS, RSS at the end of the settle time, and when RSS came back within 100 MB of the warmed-up
figure. Then the decode of the benchmark's normal photos (``bench.harness.payloads``: JPEG and PNG,
640x480 to 1600x1200) is timed in-process with each checkout's ``ImageDecoder``, in child
processes that alternate between the checkouts, and compared as a ratio.

    git worktree add /tmp/fusionserve-before <commit>
    python -m bench.memory.decode_memory --baseline-root /tmp/fusionserve-before

Writes bench/results/decode-memory.json (``--summary FILE`` prints a results file's table,
bench.memory.decode_memory_table), then, unless ``--no-docs``, rewrites the memory sections of
docs/operations.md from the committed results (bench.memory.memory_doc). Takes 10-20 minutes
on 2 cores; while it runs, /tmp/fusionserve-bench.lock exists as for the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import procs
from bench.harness.paths import REPO_ROOT, RESULTS_DIR
from bench.harness.payloads import build_requests
from bench.harness.procs import MB
from bench.harness.servers import COMMON_ENV, Server, SystemSpec
from bench.harness.session import bench_lock, machine_brief, rotated
from bench.harness.statistics import median, ratio
from bench.memory.decode_memory_table import SETTLE_S, summary_table
from bench.memory.decoder_child import DECODER_SETUP
from bench.memory.memory_doc import write_docs
from bench.memory.near_cap_images import CASES, near_cap_images

RESULTS = RESULTS_DIR / "decode-memory.json"
BUNDLE = REPO_ROOT / "models" / "default"
BACK_WITHIN_MB = 100.0  # "back" means within this of the warmed-up RSS
MAX_PIXELS = 50_000_000  # the default FUSIONSERVE_MAX_IMAGE_PIXELS
BOUNDARY = "decode-memory-bench"
TEXT = "Grey suede cushioned shoes, premium look, for evenings out"


def multipart(image: bytes, text: str = TEXT) -> bytes:
    return b"".join(
        [
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=image; filename=f\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode(),
            image,
            f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=text\r\n\r\n"
            f"{text}\r\n--{BOUNDARY}--\r\n".encode(),
        ]
    )


class RssSampler:
    """RSS of a server's process tree every ``interval_s`` seconds, in a thread."""

    def __init__(self, server: Server, interval_s: float = 0.05) -> None:
        self.server = server
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (monotonic seconds, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        return procs.tree_rss_kib(self.server.track()) * 1024 / MB

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.rss_mb()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def _burst(url: str, body: bytes, concurrency: int) -> list[tuple[int, bool, str]]:
    """(status, has Retry-After, error code) of ``concurrency`` simultaneous uploads."""
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one() -> tuple[int, bool, str]:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.json(content_type=None)
                code = "" if response.status == 200 else payload["error"]["code"]
                return response.status, "Retry-After" in response.headers, code

        return list(await asyncio.gather(*(one() for _ in range(concurrency))))


def _normal_request(url: str, image: bytes) -> int:
    async def send() -> int:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(url, data=multipart(image), headers=headers) as response,
        ):
            await response.read()
            return response.status

    return asyncio.run(send())


def _measure_burst(
    server: Server,
    url: str,
    case: str,
    data: bytes,
    concurrency: int,
    warm_mb: float,
    settle_s: float,
) -> dict[str, Any]:
    body = multipart(data)
    with RssSampler(server) as sampler:
        started = time.monotonic()
        answers = asyncio.run(_burst(url, body, concurrency))
        answered = time.monotonic()
        time.sleep(settle_s)
    after = [(t - answered, mb) for t, mb in sampler.samples if t >= answered]
    back = next((t for t, mb in after if mb <= warm_mb + BACK_WITHIN_MB), None)
    statuses = Counter(f"{status} {code}".strip() for status, _, code in answers)
    return {
        "case": case,
        "concurrency": concurrency,
        "file_bytes": len(data),
        "statuses": dict(sorted(statuses.items())),
        "503_without_retry_after": sum(1 for s, r, _ in answers if s == 503 and not r),
        "burst_s": round(answered - started, 2),
        "peak_rss_mb": round(max(mb for _, mb in sampler.samples), 1),
        "settled_rss_mb": round(sampler.samples[-1][1], 1),
        "back_within_100mb_after_s": None if back is None else round(back, 2),
    }


@dataclass(frozen=True)
class Checkout:
    """Code to measure: a checkout's root, and environment variables for its processes
    (allocator settings, say)."""

    label: str
    root: Path
    env: dict[str, str]


def measure_server(
    checkout: Checkout,
    port: int,
    payloads: dict[str, bytes],
    concurrency: list[int],
    settle_s: float,
    log_dir: Path,
) -> dict[str, Any]:
    label, root = checkout.label, checkout.root
    env = {
        "FUSIONSERVE_BUNDLE_PATH": str(BUNDLE),
        "FUSIONSERVE_LOG_LEVEL": "warning",
        **checkout.env,
    }
    spec = SystemSpec(f"decode-{label}", "fusionserve", label, port, env=env, root=root)
    server = Server(spec, log_dir / f"decode-memory-{label}.log")
    requests = build_requests(images=8, texts=200)
    normal = requests.images[0].data
    url = f"{spec.base_url}/classify"
    server.start()
    try:
        server.wait_ready(requests, requests.next_index())
        for image in requests.images * 3:  # warm-up: normal photos, every batch path
            _normal_request(url, image.data)
        time.sleep(2.0)
        with RssSampler(server) as sampler:
            time.sleep(1.0)
        warm_mb = median((mb for _, mb in sampler.samples), digits=None)
        print(f"[{label}] warmed-up RSS {warm_mb:.1f} MB", flush=True)
        bursts = []
        for level in concurrency:
            for case, data in payloads.items():
                burst = _measure_burst(server, url, case, data, level, warm_mb, settle_s)
                print(f"[{label}] {json.dumps(burst)}", flush=True)
                bursts.append(burst)
            status = _normal_request(url, normal)
            bursts[-1]["normal_request_after"] = status
        alive = server.alive()
    finally:
        stop = server.stop()
    return {
        "root": str(root),
        "warm_rss_mb": round(warm_mb, 1),
        "bursts": bursts,
        "alive_at_end": alive,
        "stop": stop,
    }


# Decodes every image argv[3] times after a warm-up; prints the mean, per format, of each
# image's median time in ms.
LATENCY_CHILD = (
    DECODER_SETUP
    + """
for data, _ in images:
    decode(data)
times = {}
for data, fmt in images:
    runs = []
    for _ in range(int(sys.argv[3])):
        started = time.perf_counter()
        decode(data)
        runs.append(time.perf_counter() - started)
    times.setdefault(fmt, []).append(statistics.median(runs) * 1000)
print(json.dumps({fmt: statistics.fmean(ms) for fmt, ms in times.items()}))
"""
)


def measure_latency(checkouts: list[Checkout], rounds: int, repeats: int) -> dict[str, Any]:
    """Mean over the normal photos of each photo's median decode time (ms), per format, for
    each checkout; child processes alternate between checkouts, ``rounds`` times."""
    requests = build_requests(images=48, texts=200)
    images = [(part.data, part.image_format) for part in requests.images]
    runs: dict[str, list[dict[str, float]]] = {c.label: [] for c in checkouts}
    with tempfile.NamedTemporaryFile(suffix=".pickle") as file:
        file.write(pickle.dumps(images))
        file.flush()
        for index in range(rounds):
            for checkout in rotated(checkouts, index):
                label, root = checkout.label, checkout.root
                env = {**os.environ, **COMMON_ENV, "PYTHONPATH": str(root), **checkout.env}
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        LATENCY_CHILD,
                        str(root),
                        file.name,
                        str(repeats),
                    ],
                    env=env,
                    cwd=root,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs[label].append(json.loads(out.stdout))
                print(f"[latency {label}] {runs[label][-1]}", flush=True)
    medians = {
        label: {fmt: median(r[fmt] for r in results) for fmt in results[0]}
        for label, results in runs.items()
    }
    figures: dict[str, Any] = {
        "images": len(images),
        "rounds": rounds,
        "median_ms": medians,
        "runs": runs,
    }
    if "before" in medians:
        figures["after_over_before"] = {
            fmt: ratio(medians["after"][fmt], medians["before"][fmt]) for fmt in medians["after"]
        }
    return figures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory.decode_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--baseline-root", type=Path, help="checkout to compare against")
    parser.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the baseline's processes (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    parser.add_argument("--concurrency", default="4,8,16")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--settle-s", type=float, default=SETTLE_S)
    parser.add_argument("--latency-rounds", type=int, default=6)
    parser.add_argument("--latency-repeats", type=int, default=15)
    parser.add_argument("--port", type=int, default=8121)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--summary", type=Path, help="only print the summary of a results file")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/operations.md's sections"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.summary is not None:
        print(summary_table(json.loads(args.summary.read_text())))
        return
    checkouts = [Checkout("after", REPO_ROOT, {})]
    if args.baseline_root is not None:
        env = dict(item.split("=", 1) for item in args.baseline_env)
        checkouts.insert(0, Checkout("before", args.baseline_root.resolve(), env))
    concurrency = [int(c) for c in args.concurrency.split(",")]
    print("building near-cap payloads ...", flush=True)
    payloads = near_cap_images(MAX_PIXELS, tuple(args.cases.split(",")))
    with bench_lock(" ".join(sys.argv)):
        servers = {
            checkout.label: measure_server(
                checkout, args.port, payloads, concurrency, args.settle_s, args.out.parent / "logs"
            )
            for checkout in checkouts
        }
        latency = measure_latency(checkouts, args.latency_rounds, args.latency_repeats)
    results = {
        "command": " ".join(["python -m bench.memory.decode_memory", *(argv or sys.argv[1:])]),
        "machine": machine_brief(),
        "max_pixels": MAX_PIXELS,
        "settle_s": args.settle_s,
        "servers": servers,
        "decode_latency": latency,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(summary_table(results))
    print(f"wrote {args.out}")
    if not args.no_docs:  # from the committed results: a run written elsewhere changes nothing
        print(f"docs/operations.md sections rewritten: {write_docs() or 'none'}")


if __name__ == "__main__":
    main()
