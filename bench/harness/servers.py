"""Servers under test: how to start, probe, measure and fully stop each one's process tree.

Every system serves ``POST /classify`` on 127.0.0.1 from the same bundle, with the same
FusionServe decode + pipeline code and the same ONNX Runtime thread settings (below). A
``SystemSpec`` runs ``fusionserve serve`` from a checkout; the peer benchmark's frameworks
subclass it with their own commands (bench.peers.systems).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from bench.harness import procs
from bench.harness.loadgen import classify_each, run
from bench.harness.paths import REPO_ROOT
from bench.harness.payloads import RequestSet
from bench.harness.venvs import venv_python

# The same for every system (FusionServe reads them as settings; the peers build their
# engine through the same Settings class): ORT intra-op threads = all cores, no spinning.
COMMON_ENV = {
    "FUSIONSERVE_INTRA_OP_THREADS": str(os.cpu_count() or 1),
    "FUSIONSERVE_INTER_OP_THREADS": "1",
    "FUSIONSERVE_ALLOW_SPINNING": "false",
    "FUSIONSERVE_DEVICE": "cpu",
    "FUSIONSERVE_LOG_LEVEL": "warning",
    "PYTHONPATH": str(REPO_ROOT),
    "RAY_USAGE_STATS_ENABLED": "0",
    "BENTOML_DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class SystemSpec:
    """A FusionServe server: ``fusionserve serve`` from ``root`` with ``env`` on top of
    COMMON_ENV."""

    key: str
    name: str
    label: str
    port: int
    venv: str | None = None  # None: the main (FusionServe) environment
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 120.0
    root: Path = REPO_ROOT  # the checkout whose code runs (another one: to compare versions)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def python(self) -> str:
        return sys.executable if self.venv is None else str(venv_python(self.venv))

    def command(self) -> list[str]:
        port = str(self.port)
        return [self.python(), "-m", "app", "serve", "--host", "127.0.0.1", "--port", port]


class ServerError(RuntimeError):
    pass


class Rss(TypedDict):
    """Resident memory in KiB: the main process (None once it is gone) and its live tree."""

    main: int | None
    tree: int


class Server:
    """One running system: a process tree in its own session, logging to ``log_path``."""

    def __init__(self, spec: SystemSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.members: set[int] = set()
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError("not started")
        return self.process.pid

    def start(self) -> None:
        if procs.port_open(self.spec.port):
            raise ServerError(f"port {self.spec.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **COMMON_ENV, "PYTHONPATH": str(self.spec.root), **self.spec.env}
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                self.spec.command(),
                cwd=self.spec.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own session: the whole tree can be found
            )

    def wait_ready(self, requests: RequestSet, probe_index: int) -> float:
        """Block until a real /classify succeeds; returns seconds since start."""
        deadline = self.started_at + self.spec.start_timeout_s
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise ServerError(f"{self.spec.name} exited during start-up: {self.log_tail()}")
            if procs.port_open(self.spec.port):
                try:
                    run(classify_each(self.spec.base_url, requests, [probe_index], 10.0))
                except Exception as exc:  # not ready yet: keep polling until the deadline
                    last_error = repr(exc)
                else:
                    self.track()
                    return time.monotonic() - self.started_at
            time.sleep(0.5)
        raise ServerError(f"{self.spec.name} not ready in time ({last_error}): {self.log_tail()}")

    def track(self) -> set[int]:
        """Remember every process of this server seen so far (for a complete stop)."""
        if self.process is not None:
            self.members |= procs.family(self.process.pid)
        return self.members

    def rss_kib(self) -> Rss:
        """RSS of the main process and of the whole live process tree."""
        members = {pid for pid in self.track() if procs.alive(pid)}
        return {"main": procs.rss_kib(self.pid), "tree": procs.tree_rss_kib(members)}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 30.0) -> dict[str, object]:
        """SIGTERM the main process (a graceful stop), then whatever of its tree is left,
        then SIGKILL; wait until the port is free. Only processes of this server are hit."""
        if self.process is None:
            return {"stopped": True}
        self.track()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        leftovers = {pid for pid in self.track() if procs.alive(pid)}
        if leftovers:
            procs.signal_all(leftovers, signal.SIGTERM)
            procs.wait_until(lambda: not any(procs.alive(p) for p in leftovers), 5.0)
            leftovers = {pid for pid in leftovers if procs.alive(pid)}
            procs.signal_all(leftovers, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        port_free = procs.wait_until(lambda: not procs.port_open(self.spec.port), 15.0)
        still = sorted(pid for pid in self.members if procs.alive(pid))
        return {
            "stop_s": round(time.monotonic() - started, 2),
            "forced": sorted(leftovers),
            "port_free": port_free,
            "left_alive": still,
        }

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def peer_command(name: str, python: str, port: int) -> list[str]:
    """How a peer framework's server (its module in bench/peers) starts, from ``python`` (the
    peer's venv): one place for every suite that measures the peers."""
    if name == "litserve":
        return [python, "-m", "bench.peers.litserve_server", "--port", str(port)]
    if name == "bentoml":
        bentoml = str(Path(python).parent / "bentoml")
        service = "bench.peers.bentoml_service:Front"
        return [bentoml, "serve", service, "--host", "127.0.0.1", "--port", str(port)]
    if name == "ray":
        return [python, "-m", "bench.peers.ray_server", "--port", str(port)]
    raise ValueError(f"no peer named {name!r}")
