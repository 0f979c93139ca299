"""Readiness across worker processes: the pod is ready only when every worker is.

Each worker publishes its lifecycle status into one shared array (a slot per worker); a
readiness probe, answered by whichever worker the kernel hands the connection to, reads them
all. With one process there is no array and readiness is the process's own."""

from __future__ import annotations

from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path

from app.core.lifecycle import Status
from app.workers.pod_reloads import PodReloads

# Status codes in the shared array (0: not started yet).
_CODES = {status: code for code, status in enumerate(Status, start=1)}
_STATUSES = {code: status for status, code in _CODES.items()}


class PodStatus:
    """One worker's view of every worker's status."""

    def __init__(
        self,
        statuses: SynchronizedArray[int],
        index: int,
        metrics_dir: Path | None = None,
        reloads: PodReloads | None = None,
        *,
        replacement: bool = False,
    ) -> None:
        """``metrics_dir``: where the workers' metrics are merged (``app.workers.pod_metrics``);
        ``reloads``: how reloads reach every worker (``app.workers.pod_reloads``); ``replacement``:
        this worker was started again while the pod serves (``app.main`` then takes no
        connection before it can answer: the kernel hands a worker connections as soon as
        it listens)."""
        if not 0 <= index < len(statuses):
            raise ValueError(f"worker {index} of {len(statuses)}")
        self._statuses = statuses
        self.index = index
        self.metrics_dir = metrics_dir
        self.reloads = reloads
        self.replacement = replacement

    @property
    def workers(self) -> int:
        return len(self._statuses)

    def publish(self, status: Status) -> None:
        """This worker's status, for the others to read."""
        self._statuses[self.index] = _CODES[status]

    def not_ready(self) -> list[str]:
        """Each worker that is not ready, as ``worker N: status`` (empty: all are)."""
        with self._statuses.get_lock():
            codes = [self._statuses[i] for i in range(len(self._statuses))]
        return [
            f"worker {i}: {_STATUSES[code].value if code else 'starting'}"
            for i, code in enumerate(codes)
            if code != _CODES[Status.READY]
        ]
