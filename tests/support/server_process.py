"""A real `fusionserve serve` process on loopback, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.repo_paths import ROOT

__all__ = ["ServerProcess", "free_port", "start_server", "workers_of"]


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until /readyz answers 200; fails at once if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_text()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not ready in {timeout_s} s:\n{self.log_text()}")


def start_server(bundle: Path, log: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """Start `python -m app serve` on a free port, CPU, logging to ``log``."""
    port = free_port()
    environment = os.environ | {"FUSIONSERVE_PORT": str(port), "FUSIONSERVE_DEVICE": "cpu"}
    with log.open("w") as out:
        # A file, not a pipe: an unread pipe would block the server once it fills.
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--bundle", str(bundle)],
            cwd=ROOT,
            env=environment | (env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(process, f"http://127.0.0.1:{port}", log)


def workers_of(pid: int) -> list[int]:
    """The worker processes of the supervisor ``pid`` (not multiprocessing's helpers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:
            found.append(int(child))
    return sorted(found)
