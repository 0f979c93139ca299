"""Lifecycle state of the service, read by the health endpoints and the routes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.errors import NotReady, RequestError, ShuttingDown
from app.service import Classifier


class Status(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass
class ServiceState:
    status: Status = Status.LOADING
    classifier: Classifier | None = None
    error: str | None = None

    def ready_classifier(self) -> Classifier:
        """The classifier, or a 503 while loading, failed or stopping."""
        if self.status is not Status.READY or self.classifier is None:
            raise self._unavailable()
        return self.classifier

    def refusal(self) -> RequestError | None:
        """Why a classification request would be refused right now, or None."""
        if self.status is not Status.READY or self.classifier is None:
            return self._unavailable()
        return self.classifier.refusal()

    def stop_accepting(self) -> None:
        """From now on /readyz is 503 and new requests are refused; accepted ones carry on.
        Cheap and synchronous: it runs in the signal handler. A failed service stays failed."""
        if self.status is not Status.FAILED:
            self.status = Status.STOPPING

    def _unavailable(self) -> RequestError:
        if self.status is Status.STOPPING:
            return ShuttingDown()
        return NotReady(f"the model is not ready (status: {self.status.value})")
