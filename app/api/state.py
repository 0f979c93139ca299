"""Lifecycle state of the service, read by the health endpoints and the routes."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from app.errors import NotReady, RequestError, ShuttingDown
from app.memory_budget import MemoryBudget
from app.registry import ModelRegistry
from app.service import Classifier


class Status(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass
class ServiceState:
    """The service's status and its bundles. READY once every bundle is loaded; each bundle
    serves as soon as it is loaded itself (``ModelRegistry.lease``)."""

    registry: ModelRegistry
    body_memory: MemoryBudget | None = None  # request bodies held at once (app.api.gate)
    status: Status = Status.LOADING
    error: str | None = None

    def refusal(self) -> RequestError | None:
        """Why a classification request would be refused before its body is read, or None.
        With one bundle its overload is known before parsing; with several, the bundle is
        named in the body, so each bundle's own limit is applied after parsing."""
        if self.status in (Status.STOPPING, Status.FAILED):
            return self._unavailable()
        slots = self.registry.slots
        if len(slots) == 1:
            classifier = slots[0].classifier
            if classifier is None:
                return self._unavailable()
            return classifier.refusal()
        if not any(s.classifier is not None for s in slots):
            return self._unavailable()
        return None

    def stop_accepting(self) -> None:
        """From now on /readyz is 503 and new requests are refused; accepted ones carry on.
        Cheap and synchronous: it runs in the signal handler. A failed service stays failed."""
        self.registry.stop_accepting()
        if self.status is not Status.FAILED:
            self.status = Status.STOPPING

    @property
    def is_open(self) -> bool:
        """Neither stopping nor failed."""
        return self.status not in (Status.STOPPING, Status.FAILED)

    @contextmanager
    def lease(self, model: str | None = None) -> Iterator[Classifier]:
        """The classifier serving ``model`` (default bundle when None), held until the request
        is answered: 503 while stopping or failed, 404 for an unknown name, 503 while that
        bundle loads. Take it with no ``await`` between the lookup and the call it serves."""
        if not self.is_open:
            raise self._unavailable()
        with self.registry.lease(model) as classifier:
            yield classifier

    def _unavailable(self) -> RequestError:
        if self.status is Status.STOPPING:
            return ShuttingDown()
        return NotReady(f"the model is not ready (status: {self.status.value})")
