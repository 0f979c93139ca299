"""GPU memory of a server, from nvidia-smi: what its processes hold (``--query-compute-apps``,
summed over the server's process tree), else the GPU's whole used memory
(``--query-gpu=memory.used``: in a container nvidia-smi may show host process ids, or none),
else nothing (no nvidia-smi: a CPU machine). The server tree's RSS is read beside it."""

from __future__ import annotations

import shutil
import subprocess
from typing import TypedDict

from bench.harness import procs

COMPUTE_APPS = ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
GPU_USED = ["--query-gpu=memory.used", "--format=csv,noheader,nounits"]
GPU_NAME = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]


class MemoryReading(TypedDict):
    """GPU memory in MiB and where it was read (``gpu_mib`` None: unavailable), and the
    server tree's RSS in MiB."""

    gpu_mib: float | None
    source: str
    rss_mib: float


def parse_compute_apps(text: str) -> dict[int, float]:
    """``pid, used_memory`` lines -> MiB by process id (lines that do not parse are skipped:
    nvidia-smi writes ``[N/A]`` where it cannot tell)."""
    used: dict[int, float] = {}
    for line in text.splitlines():
        pid, _, mib = (field.strip() for field in line.partition(","))
        try:
            used[int(pid)] = used.get(int(pid), 0.0) + float(mib)
        except ValueError:
            continue
    return used


def parse_gpu_used(text: str) -> float | None:
    """The first GPU's used memory (MiB) from ``--query-gpu=memory.used`` output."""
    for line in text.splitlines():
        try:
            return float(line.strip())
        except ValueError:
            continue
    return None


def _smi(arguments: list[str]) -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, *arguments], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_description() -> str | None:
    """``name, total MiB, driver`` of the first GPU, or None without nvidia-smi."""
    text = _smi(GPU_NAME)
    return text.splitlines()[0].strip() if text and text.strip() else None


def read(pids: set[int]) -> MemoryReading:
    """The GPU memory held by ``pids`` (a server's process tree), with its source."""
    rss = round(procs.tree_rss_kib({pid for pid in pids if procs.alive(pid)}) / 1024, 1)
    apps = _smi(COMPUTE_APPS)
    if apps is None:
        return {"gpu_mib": None, "source": "unavailable (no nvidia-smi)", "rss_mib": rss}
    mine = [mib for pid, mib in parse_compute_apps(apps).items() if pid in pids]
    if mine:
        return {"gpu_mib": sum(mine), "source": "compute-apps of the server", "rss_mib": rss}
    used = parse_gpu_used(_smi(GPU_USED) or "")
    source = "memory.used of the whole GPU" if used is not None else "unavailable"
    return {"gpu_mib": used, "source": source, "rss_mib": rss}
