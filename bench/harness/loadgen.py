"""Asyncio + aiohttp load generator for ``POST /classify`` (library and CLI).

Modes:

- ``open``: open-loop Poisson arrivals at a fixed rate. Each request's latency is counted
  from its *scheduled* send time, so a server (or client) that falls behind is charged for
  the wait: no coordinated omission.
- ``closed``: N concurrent clients, each sending its next request as soon as the previous one
  is answered (saturation throughput).
- ``single``: one client, sequential requests (unloaded latency).

aiohttp rather than httpx/locust: with pre-built bodies it costs about 0.55 ms of client CPU
per request, which matters because client and server share the same two cores. uvloop is used
when importable for the same reason.

The suites that measure servers at saturation (bench.peers, bench.variants) run the same three
phases, sized by their plans: ``warmup_run``, ``saturation_run``, ``single_run``.

CLI: ``python -m bench.harness.loadgen closed --url http://127.0.0.1:8011 --concurrency 32``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
import numpy as np

from bench.harness.payloads import RequestSet, build_requests
from bench.harness.statistics import percentiles

T = TypeVar("T")

OK = "200"
CONN_ERROR = "conn_error"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Sample:
    """One request: times are ``time.perf_counter()`` seconds (uvloop's clock has only
    millisecond resolution); ``status`` is the HTTP code or an error."""

    scheduled: float
    started: float
    finished: float
    status: str
    retry_after: bool
    server_ms: float | None = None  # FusionServe's own timing.total_ms, when asked for
    backoff_s: float | None = None  # the Retry-After value in seconds, when one was sent

    @property
    def latency_s(self) -> float:
        return self.finished - self.scheduled


@dataclass
class RunResult:
    mode: str
    duration_s: float
    concurrency: int | None = None
    rate: float | None = None
    samples: list[Sample] = field(default_factory=list)
    window_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        statuses = Counter(s.status for s in self.samples)
        ok = [s.latency_s * 1000 for s in self.samples if s.status == OK]
        rejected = [s for s in self.samples if s.status == "503"]
        lag = [(s.started - s.scheduled) * 1000 for s in self.samples]
        server = [s.server_ms for s in self.samples if s.server_ms is not None]
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "target_rate_rps": self.rate,
            "duration_s": self.duration_s,
            "window_s": round(self.window_s, 3),
            "requests": len(self.samples),
            "ok": len(ok),
            "throughput_rps": round(len(ok) / self.window_s, 3) if self.window_s else 0.0,
            "status_counts": dict(sorted(statuses.items())),
            "latency_ms": percentiles(ok),
            "retry_after": {
                "503": len(rejected),
                "503_with_retry_after": sum(s.retry_after for s in rejected),
            },
            # How late the client itself sent (event-loop lag); should stay small.
            "send_lag_ms": percentiles(lag),
            # Only in single-client runs against FusionServe: time spent inside the service
            # (decode + queue + inference), to split a latency into server and HTTP parts.
            "server_total_ms": percentiles(server) if server else None,
        }


def _session(connections: int, timeout_s: float) -> aiohttp.ClientSession:
    # One keep-alive connection per in-flight request (up to ``connections``).
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    )


async def _send(
    session: aiohttp.ClientSession,
    url: str,
    requests: RequestSet,
    scheduled: float,
    server_timing: bool = False,
) -> Sample:
    body = requests.body(requests.next_index())  # a fresh text for every request
    started = time.perf_counter()
    retry_after = False
    backoff_s = None
    server_ms = None
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": requests.content_type}
        ) as response:
            content = await response.read()
            status = str(response.status)
            retry_after = "Retry-After" in response.headers
            with contextlib.suppress(ValueError):
                backoff_s = float(response.headers.get("Retry-After", ""))
        if server_timing and status == OK:
            server_ms = json.loads(content).get("timing", {}).get("total_ms")
    except TimeoutError:
        status = TIMEOUT
    except (aiohttp.ClientError, OSError):
        status = CONN_ERROR
    finished = time.perf_counter()
    return Sample(scheduled, started, finished, status, retry_after, server_ms, backoff_s)


def classify_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/classify"


async def open_loop(
    base_url: str,
    requests: RequestSet,
    rate: float,
    duration_s: float,
    *,
    seed: int = 0,
    timeout_s: float = 30.0,
    connections: int = 1024,
) -> RunResult:
    """Poisson arrivals at ``rate``/s for ``duration_s``; waits for every answer."""
    rng = np.random.default_rng(seed)
    # A Poisson process conditioned on its count: exactly rate x duration arrivals, at
    # independent uniform times. Every run offers precisely the nominal rate, while the
    # gaps stay exponential-like (bursts and lulls as in real traffic).
    offsets = np.sort(rng.uniform(0.0, duration_s, size=round(rate * duration_s)))
    url = classify_url(base_url)
    result = RunResult("open", duration_s, rate=rate)
    async with _session(connections, timeout_s) as session:
        start = time.perf_counter() + 0.05
        tasks = []
        for offset in offsets:
            scheduled = start + float(offset)
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(session, url, requests, scheduled)))
        result.samples = list(await asyncio.gather(*tasks))
    last = max((s.finished for s in result.samples), default=start + duration_s)
    # Achieved rate over the whole run, including the drain after the last arrival.
    result.window_s = max(duration_s, last - start)
    return result


async def closed_loop(
    base_url: str,
    requests: RequestSet,
    concurrency: int,
    duration_s: float,
    *,
    timeout_s: float = 30.0,
    mode: str = "closed",
    server_timing: bool = False,
    max_requests: int | None = None,
) -> RunResult:
    """``concurrency`` clients back to back for ``duration_s``; counts answers in the window.

    A client told to come back later (an answer with ``Retry-After``) waits that long before
    its next request, as a well-behaved client does; without the wait, clients beyond a
    server's admission limit would spin on instant refusals and the run would measure how
    fast the server can say no rather than its throughput. With ``max_requests`` the clients
    stop once that many were sent (``duration_s`` still bounds the run), and the window is
    the time they took."""
    url = classify_url(base_url)
    samples: list[Sample] = []
    sent = 0
    async with _session(concurrency, timeout_s) as session:
        start = time.perf_counter()
        end = start + duration_s

        async def client() -> None:
            nonlocal sent
            while time.perf_counter() < end and (max_requests is None or sent < max_requests):
                sent += 1
                sample = await _send(session, url, requests, time.perf_counter(), server_timing)
                samples.append(sample)
                if sample.backoff_s:
                    await asyncio.sleep(min(sample.backoff_s, max(0.0, end - time.perf_counter())))

        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    window_s = duration_s if max_requests is None else min(duration_s, elapsed)
    result = RunResult(mode, duration_s, concurrency=concurrency, window_s=window_s)
    # Requests still running at the deadline are finished but not counted.
    result.samples = [s for s in samples if s.finished <= end]
    return result


async def single_client(
    base_url: str, requests: RequestSet, duration_s: float, *, timeout_s: float = 30.0
) -> RunResult:
    """One client, sequential requests: the latency of an otherwise idle server. Answers are
    parsed for a ``timing`` block (FusionServe's); at one client that costs nothing that
    matters."""
    return await closed_loop(
        base_url, requests, 1, duration_s, timeout_s=timeout_s, mode="single", server_timing=True
    )


async def classify_each(
    base_url: str, requests: RequestSet, indices: Sequence[int], timeout_s: float = 30.0
) -> list[Any]:
    """Requests ``indices`` one after another; the parsed JSON bodies (raises on a non-200)."""
    answers = []
    async with _session(1, timeout_s) as session:
        for index in indices:
            async with session.post(
                classify_url(base_url),
                data=requests.body(index),
                headers={"Content-Type": requests.content_type},
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
                answers.append(json.loads(body))
    return answers


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when available (cheaper per request than asyncio's loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class LoadPlan(Protocol):
    """What a suite's plan fixes for the closed-loop phases (read-only attributes)."""

    @property
    def concurrency(self) -> int: ...

    @property
    def warmup_s(self) -> float: ...

    @property
    def saturation_s(self) -> float: ...

    @property
    def single_s(self) -> float: ...


def warmup_run(base_url: str, requests: RequestSet, plan: LoadPlan) -> RunResult:
    """The plan's warm-up: its closed-loop concurrency for ``warmup_s``."""
    return run(closed_loop(base_url, requests, plan.concurrency, plan.warmup_s))


def saturation_run(base_url: str, requests: RequestSet, plan: LoadPlan) -> RunResult:
    """The plan's saturation measure: its closed-loop concurrency for ``saturation_s``."""
    return run(closed_loop(base_url, requests, plan.concurrency, plan.saturation_s))


def single_run(base_url: str, requests: RequestSet, plan: LoadPlan) -> RunResult:
    """The plan's single-client measure, for ``single_s``."""
    return run(single_client(base_url, requests, plan.single_s))


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="http://127.0.0.1:8011", help="server base URL")
    common.add_argument("--duration", type=float, default=20.0, help="seconds")
    common.add_argument("--timeout", type=float, default=30.0, help="client timeout, seconds")
    parser = argparse.ArgumentParser(prog="python -m bench.harness.loadgen", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    closed = modes.add_parser("closed", parents=[common], help="N concurrent clients")
    closed.add_argument("--concurrency", type=int, default=32)
    open_ = modes.add_parser("open", parents=[common], help="open-loop Poisson arrivals")
    open_.add_argument("--rate", type=float, required=True, help="requests per second")
    open_.add_argument("--seed", type=int, default=0)
    modes.add_parser("single", parents=[common], help="one sequential client")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    requests = build_requests()
    if args.mode == "closed":
        coro = closed_loop(
            args.url, requests, args.concurrency, args.duration, timeout_s=args.timeout
        )
    elif args.mode == "open":
        coro = open_loop(
            args.url, requests, args.rate, args.duration, seed=args.seed, timeout_s=args.timeout
        )
    else:
        coro = single_client(args.url, requests, args.duration, timeout_s=args.timeout)
    print(json.dumps(run(coro).summary(), indent=2))


if __name__ == "__main__":
    main()
