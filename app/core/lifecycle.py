"""The service's lifecycle: loading, ready, failed, stopping. One object, read by every part
that must know whether new work is taken (the request gate, admission, the registry, the
health routes and the metrics), so that there is one answer to "are we stopping?"."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from app.errors import NotReady, RequestError, ShuttingDown


class Status(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass
class Lifecycle:
    """READY once every bundle is loaded (each bundle serves as soon as it is loaded itself);
    STOPPING from the first stop signal on; FAILED when loading failed, for good."""

    status: Status = Status.LOADING
    error: str | None = None
    # Told of the status and of every change (a worker process publishes it to the pod).
    on_change: Callable[[Status], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.status)

    @property
    def accepting(self) -> bool:
        """Whether new work may be taken: neither stopping nor failed."""
        return self.status not in (Status.STOPPING, Status.FAILED)

    def loaded(self) -> None:
        """Every bundle is loaded (unless stopping or failed meanwhile)."""
        if self.status is Status.LOADING:
            self.status = Status.READY
            self._changed()

    def failed(self, error: str) -> None:
        self.status, self.error = Status.FAILED, error
        self._changed()

    def stop_accepting(self) -> None:
        """From now on readiness is 503 and new requests are refused; accepted ones carry on.
        Cheap and synchronous: it runs in the signal handler. A failed service stays failed."""
        if self.status is not Status.FAILED:
            self.status = Status.STOPPING
            self._changed()

    def unavailable(self) -> RequestError:
        """The error a request gets while the service cannot take it."""
        if self.status is Status.STOPPING:
            return ShuttingDown()
        return NotReady(f"the model is not ready (status: {self.status.value})")
