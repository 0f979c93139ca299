"""What every benchmark session does around its measurements: hold the machine-wide lock,
log progress, order alternated runs, and record the machine and software it ran on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.harness import venvs
from bench.harness.paths import REPO_ROOT

T = TypeVar("T")

# Exists while a benchmark runs: other heavy work on the machine (the lead's test runs, another
# benchmark) should wait, since the load generator and the servers share its cores.
LOCK = Path("/tmp/fusionserve-bench.lock")

# The main environment's libraries whose versions a full session records.
MAIN_DISTRIBUTIONS = (
    "fastapi",
    "uvicorn",
    "starlette",
    "onnxruntime",
    "numpy",
    "pillow",
    "tokenizers",
    "aiohttp",
)


def lock_held() -> bool:
    """True while some benchmark holds the lock."""
    return LOCK.exists()


@contextlib.contextmanager
def bench_lock(command: str) -> Iterator[None]:
    """Hold the lock (naming this process and ``command``) for the block."""
    LOCK.write_text(f"{os.getpid()} {command}\n")
    try:
        yield
    finally:
        LOCK.unlink(missing_ok=True)


def logger(prefix: str) -> Callable[[str], None]:
    """A progress printer: ``[prefix HH:MM:SS] message``, flushed at once."""

    def log(message: str) -> None:
        print(f"[{prefix} {time.strftime('%H:%M:%S')}] {message}", flush=True)

    return log


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """``items`` rotated left by ``turn``: each run of a rotation starts one further along
    (two items: their order flips every turn)."""
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]


def git_head(root: Path = REPO_ROOT) -> str:
    """The commit of the checkout at ``root`` (servers start from the working tree, edits
    included)."""
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip()


def machine_brief() -> dict[str, Any]:
    """Cores and Python version: what the smaller suites record."""
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


def machine_info(peer_venvs: Iterable[str] = ()) -> dict[str, Any]:
    """Cores, CPU model, memory, kernel, versions (the main environment's and each listed peer
    venv's), the commit and whether app/ had uncommitted changes."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, Any] = {
        "python": platform.python_version(),
        "main": {d: importlib.metadata.version(d) for d in MAIN_DISTRIBUTIONS},
    }
    for venv in peer_venvs:
        versions[venv] = venvs.versions(venv)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "app"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "versions": versions,
        "git_commit": git_head(),
        "app_dirty": bool(dirty),
    }
