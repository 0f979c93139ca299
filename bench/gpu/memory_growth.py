"""(c) GPU memory over varied batch sizes: the fp32 default bundle served as in (b) (the GPU
decoder on CUDA, else the CPU one) takes ``memory_warmup_requests`` spread over every
concurrency level of ``memory_concurrency``, so that batches of every size have formed once;
then ``memory_requests`` more over the same levels (most requests at the high ones). GPU
memory (bench.gpu.gpu_memory) is read when the server is ready, after that warm-up
("before") and at the end ("after"); growth = after / before - 1. The batch sizes that
formed are read from the pod's /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.gpu import gpu_memory
from bench.gpu.plan import MEMORY_GROWTH, Plan
from bench.gpu.saturation import server_env
from bench.gpu.serving import batch_counts, batches_formed, info, measure, serving
from bench.harness.payloads import RequestSet, build_requests
from bench.harness.servers import Server
from bench.harness.statistics import ratio_or_none

PHASE_TIMEOUT_S = 120.0


def phase_requests(total: int, levels: tuple[int, ...]) -> list[int]:
    """``total`` requests shared between concurrency ``levels`` in proportion to each level
    (a phase at concurrency 1 takes few), at least one client's worth each; the sum is
    ``total``."""
    weight = sum(levels)
    counts = [max(level, total * level // weight) for level in levels]
    counts[-1] += total - sum(counts)
    return counts


def _pass(server: Server, requests: RequestSet, plan: Plan, total: int) -> dict[str, int]:
    """``total`` requests over every concurrency level; the statuses they got."""
    statuses: dict[str, int] = {}
    levels = plan.memory_concurrency
    for level, count in zip(levels, phase_requests(total, levels), strict=True):
        run = measure(
            server, requests, level, PHASE_TIMEOUT_S, plan.loadgen_processes, max_requests=count
        )
        for status, n in run["status_counts"].items():
            statuses[status] = statuses.get(status, 0) + n
    return statuses


def measure_memory(plan: Plan, logs: Path) -> dict[str, Any]:
    requests = build_requests()
    decoder = "gpu" if plan.device == "cuda" else "cpu"
    env = server_env(plan.fp32_bundle, plan, decoder)
    log = logs / "memory.log"
    with serving("memory", plan.base_port + 20, env, requests, log) as server:
        execution = info(server)
        members = server.track()
        ready = gpu_memory.read(members)
        warmup_statuses = _pass(server, requests, plan, plan.memory_warmup_requests)
        before = gpu_memory.read(server.track())
        counts_before = batch_counts(server)
        statuses = _pass(server, requests, plan, plan.memory_requests)
        after = gpu_memory.read(server.track())
        formed = batches_formed(counts_before, batch_counts(server))
    growth = ratio_or_none(after["gpu_mib"], before["gpu_mib"], 4)
    rss_growth = ratio_or_none(after["rss_mib"], before["rss_mib"], 4)
    return {
        "bundle": "fp32",
        "decoder": decoder,
        "info": execution,
        "concurrency_levels": list(plan.memory_concurrency),
        "warmup_requests": plan.memory_warmup_requests,
        "requests": plan.memory_requests,
        "warmup_status_counts": warmup_statuses,
        "status_counts": statuses,
        "batches_formed": formed,
        "ready": ready,
        "before": before,
        "after": after,
        "growth": None if growth is None else round(growth - 1, 4),
        "rss_growth": None if rss_growth is None else round(rss_growth - 1, 4),
        "target_growth": MEMORY_GROWTH,
        "target_met": None if growth is None else growth - 1 <= MEMORY_GROWTH,
    }
