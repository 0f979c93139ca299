"""Closed-loop load from several processes, with the load generator's own CPU use.

One aiohttp process costs about 0.55 ms of CPU per request (bench.harness.loadgen), so it
tops out near 1,800 req/s: too few for a pod with many workers. ``closed_load`` forks
``processes`` load generators that share the clients (and any request count) between them,
runs ``bench.harness.loadgen.closed_loop`` in each, and merges their samples into one
``RunResult``. Each process reports the CPU it used; their sum over the window and the
processes' number give ``busy_share``, the load generator's own utilisation: near 1, it,
not the server, may be what limits the run.
"""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.harness import procs
from bench.harness.loadgen import RunResult, Sample, closed_loop, run
from bench.harness.payloads import RequestSet

# At or above this share of its processes' time busy, the load generator is taken to be the
# limit of a run (the server may have had more to give).
LOADGEN_BOUND_SHARE = 0.85


@dataclass
class LoadResult:
    """The merged run, with the load generator's CPU and everyone's over the same window."""

    result: RunResult
    processes: int
    client_cpu_s: float
    machine_busy_cpu_s: float

    @property
    def busy_share(self) -> float:
        """The load generator's CPU over the window, as a share of its processes' time."""
        window = self.result.window_s or self.result.duration_s
        return self.client_cpu_s / (self.processes * window) if window else 0.0

    def summary(self) -> dict[str, Any]:
        """The run's summary (``RunResult.summary``) with the load generator's figures."""
        summary = self.result.summary()
        ok = max(summary["ok"], 1)
        window = self.result.window_s or self.result.duration_s
        summary["loadgen"] = {
            "processes": self.processes,
            "cpu_s": round(self.client_cpu_s, 3),
            "cpu_ms_per_request": round(1000 * self.client_cpu_s / ok, 3),
            "busy_share": round(self.busy_share, 3),
            "bound": self.busy_share >= LOADGEN_BOUND_SHARE,
        }
        summary["machine_busy_cores"] = round(self.machine_busy_cpu_s / window, 2) if window else 0
        return summary


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal whole shares (the first ones larger)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _child(
    connection: Connection,
    base_url: str,
    requests: RequestSet,
    concurrency: int,
    duration_s: float,
    max_requests: int | None,
) -> None:
    # A time limit's SIGTERM reaches the whole process group: a load generator just stops
    # (the parent's own handler, inherited by the fork, would print a traceback).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cpu_before = procs.own_cpu_seconds()
    result = run(
        closed_loop(base_url, requests, concurrency, duration_s, max_requests=max_requests)
    )
    connection.send((result.samples, result.window_s, procs.own_cpu_seconds() - cpu_before))
    connection.close()


def closed_load(
    base_url: str,
    requests: RequestSet,
    concurrency: int,
    duration_s: float,
    *,
    processes: int = 1,
    max_requests: int | None = None,
) -> LoadResult:
    """``concurrency`` closed-loop clients over ``processes`` forked load generators (each
    starting at its own place in the texts), for ``duration_s`` or until ``max_requests``
    were sent in all."""
    processes = max(1, min(processes, concurrency))
    context = multiprocessing.get_context("fork")  # the request set is inherited, not pickled
    clients = shares(concurrency, processes)
    limits = shares(max_requests, processes) if max_requests is not None else [None] * processes
    stride = max(1, len(requests) // processes)
    busy_before = procs.busy_cpu_seconds()
    children = []
    for index in range(processes):
        part = RequestSet(
            requests.images,
            requests.texts,
            requests.suffixes,
            itertools.count(requests.next_index() + index * stride),
        )
        receive, send = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=(send, base_url, part, clients[index], duration_s, limits[index]),
            daemon=True,
        )
        child.start()
        send.close()
        children.append((child, receive))
    started = time.perf_counter()
    samples: list[Sample] = []
    windows, client_cpu = [], 0.0
    for child, receive in children:
        child_samples, window_s, cpu_s = receive.recv()
        child.join()
        samples += child_samples
        windows.append(window_s)
        client_cpu += cpu_s
    elapsed = time.perf_counter() - started
    window = max(windows) if max_requests is not None else duration_s
    result = RunResult("closed", duration_s, concurrency=concurrency, window_s=window)
    result.samples = samples
    busy = procs.busy_cpu_seconds() - busy_before
    # The whole machine's busy CPU over the processes' lifetime, scaled to the window.
    return LoadResult(result, processes, client_cpu, busy * window / max(elapsed, window))
