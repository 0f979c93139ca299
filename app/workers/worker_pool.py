"""Several serving processes on one port: the supervisor and its workers (``workers``).

One FusionServe process does about one core of Python work (the GIL). With ``workers`` > 1
the supervisor binds the port once and starts that many worker processes on it (spawned:
each a fresh interpreter, nothing shared by fork); the kernel hands each new connection to
one of them. Each worker is a whole FusionServe with its own sessions, batcher and
admission, holding its share of the pod's limits (``worker_settings``). Readiness is the
pod's: every worker publishes its status into one shared array (``app.workers.pod_status``); so are
the metrics: a scrape answered by any worker gives the pod's totals (``app.workers.pod_metrics``).

On SIGTERM or SIGINT the supervisor passes SIGTERM to every worker; each drains as a single
process does (``app.server``: readiness 503, new requests refused, accepted ones answered),
and the supervisor exits once all have: 0 when every worker drained cleanly. A worker that
dies while the pod serves (killed, crashed) is started again; its slot reads "starting"
meanwhile, so the pod is not ready, and it takes no connection until its bundles are loaded
and warm (the other workers take them all meanwhile). A worker that exits by itself (its
bundle failed to load) stops the pod with status 1, so that the orchestrator restarts it.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from types import FrameType
from typing import Literal, Protocol

import uvicorn

from app.config.settings import Settings
from app.workers.pod_reloads import PodReloads
from app.workers.pod_status import PodStatus

logger = logging.getLogger(__name__)

# Seconds a stopping pod waits for its workers beyond their own drain and grace times.
STOP_MARGIN_S = 10.0
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: those it may run on (its affinity: a container's
    cpuset), fewer when its cgroup's CPU quota allows less (a container's CPU limit, as
    Kubernetes sets it), rounded up."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup may use (quota / period), or None when unlimited or
    unknown: cgroup v2's ``cpu.max``, else v1's ``cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us``."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        for v1 in (root / "cpu", root / "cpu,cpuacct"):
            quota_file = v1 / "cpu.cfs_quota_us"
            if quota_file.is_file():
                quota_us = int(quota_file.read_text())
                period_us = int((v1 / "cpu.cfs_period_us").read_text())
                return None if quota_us < 0 else quota_us / period_us
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return None


def resolve_workers(setting: int | Literal["auto"], cores: int) -> int:
    """The number of worker processes: ``setting``, or for ``auto`` one per two cores (at
    least 1): each worker's event loop takes about a core, and its decoding and ONNX Runtime
    threads the other."""
    if setting == "auto":
        return max(1, cores // 2)
    return setting


def worker_settings(settings: Settings, workers: int, cores: int) -> Settings:
    """One worker's settings: ``max_in_flight`` is the pod's, divided between the workers
    (at least 1 each), so that admission means for the pod what it means for one process;
    ONNX Runtime's intra-op threads, when 0 (ONNX Runtime would take every core in every
    worker), are the cores divided between the workers. The rest is unchanged."""
    if workers == 1:
        return settings
    update: dict[str, object] = {
        "workers": 1,
        "max_in_flight": max(1, settings.max_in_flight // workers),
    }
    if settings.intra_op_threads == 0:
        update["intra_op_threads"] = max(1, cores // workers)
    return settings.model_copy(update=update)


class ServeWorker(Protocol):
    """What a worker process runs: serve ``settings`` on ``sockets`` as one worker of the
    ``pod``; the process's exit status (``app.server.run_server``, which the CLI passes: the
    supervisor does not import the server it starts)."""

    def __call__(
        self, settings: Settings, *, sockets: Sequence[socket.socket], pod: PodStatus
    ) -> int: ...


def _worker(
    settings: Settings,
    index: int,
    statuses: SynchronizedArray[int],
    sock: socket.socket,
    metrics_dir: Path,
    reloads: tuple[SynchronizedArray[int], SynchronizedArray[int]],
    replacement: bool,
    serve: ServeWorker,
) -> None:
    """A worker process: serve on the supervisor's socket, publishing into ``statuses``;
    a ``replacement`` for one that died takes connections only once loaded."""
    from app.observability.logging_setup import setup_logging

    setup_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    pod = PodStatus(
        statuses, index, metrics_dir, PodReloads(*reloads, index), replacement=replacement
    )
    raise SystemExit(serve(settings, sockets=[sock], pod=pod))


class Supervisor:
    """Starts the workers, restarts one that dies, stops them all on a signal."""

    def __init__(self, settings: Settings, workers: int, serve: ServeWorker) -> None:
        self.settings = worker_settings(settings, workers, available_cores())
        self._serve = serve
        self.workers = workers
        self._context = multiprocessing.get_context("spawn")
        self.statuses: SynchronizedArray[int] = self._context.Array("i", workers)
        # Reloads per bundle, and the last each worker has done (app.workers.pod_reloads).
        bundles = len(settings.bundle_dirs())
        self.reloads: tuple[SynchronizedArray[int], SynchronizedArray[int]] = (
            self._context.Array("i", bundles),
            self._context.Array("i", workers * bundles),
        )
        self._processes: list[SpawnProcess] = []
        self._stopping = False
        self._socket: socket.socket | None = None
        # The workers' metrics are merged here; prometheus-client reads the variable when a
        # worker first imports it, so it is set before any worker starts.
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="fusionserve-metrics-"))
        os.environ[METRICS_DIR_VARIABLE] = str(self.metrics_dir)

    def bind(self) -> socket.socket:
        """The listening socket every worker serves on (bound once, here)."""
        config = uvicorn.Config(
            "app.main:create_app", host=self.settings.host, port=self.settings.port
        )
        self._socket = config.bind_socket()
        return self._socket

    def _start(self, index: int, *, replacement: bool = False) -> SpawnProcess:
        assert self._socket is not None
        self.statuses[index] = 0  # starting
        process = self._context.Process(
            target=_worker,
            args=(
                self.settings,
                index,
                self.statuses,
                self._socket,
                self.metrics_dir,
                self.reloads,
                replacement,
                self._serve,
            ),
            name=f"fusionserve-worker-{index}",
        )
        process.start()
        logger.info("worker %d started (pid %s)", index, process.pid)
        return process

    def _signal(self, sig: int, frame: FrameType | None) -> None:
        if not self._stopping:
            logger.info("%s: stopping %d workers", signal.Signals(sig).name, self.workers)
        self._stopping = True
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def run(self) -> int:
        """Serve until a signal, or until a worker fails to load; the exit status."""
        self.bind()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal)
        self._processes = [self._start(i) for i in range(self.workers)]
        failed = False
        while not self._stopping:
            wait([p.sentinel for p in self._processes], timeout=1.0)
            for index, process in enumerate(self._processes):
                if process.is_alive() or self._stopping:
                    continue
                self._forget(process)
                if process.exitcode == 1:  # it could not load its bundles: so can no other
                    logger.critical("worker %d failed to start; stopping the pod", index)
                    failed = True
                    self._signal(signal.SIGTERM, None)
                    break
                logger.error(
                    "worker %d (pid %s) exited with status %s; starting it again",
                    index,
                    process.pid,
                    process.exitcode,
                )
                self._processes[index] = self._start(index, replacement=True)
        return 1 if self._stop() or failed else 0

    def _stop(self) -> bool:
        """Wait for every worker to drain; True if any did not exit cleanly."""
        settings = self.settings
        deadline = time.monotonic() + (
            settings.shutdown_delay_s + settings.shutdown_grace_s + STOP_MARGIN_S
        )
        unclean = False
        for index, process in enumerate(self._processes):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.error("worker %d did not stop in time; killing it", index)
                process.kill()
                process.join()
            unclean = unclean or process.exitcode != 0
        if self._socket is not None:
            self._socket.close()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return unclean

    def _forget(self, process: SpawnProcess) -> None:
        """Drop a dead worker from the pod's live gauges (its counters keep counting)."""
        from prometheus_client import multiprocess

        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]


def serve_workers(settings: Settings, workers: int, serve: ServeWorker) -> int:
    """Serve ``settings`` with ``workers`` worker processes, each running ``serve`` (see the
    module's docstring)."""
    return Supervisor(settings, workers, serve).run()
