"""Lifecycle state of the service, read by the health endpoints and the routes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.errors import NotReady, RequestError
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
        """The classifier, or ``NotReady`` (503) while loading, failed or stopping."""
        if self.status is not Status.READY or self.classifier is None:
            raise NotReady(f"the model is not ready (status: {self.status.value})")
        return self.classifier

    def refusal(self) -> RequestError | None:
        """Why a classification request would be refused right now, or None."""
        if self.status is not Status.READY or self.classifier is None:
            return NotReady(f"the model is not ready (status: {self.status.value})")
        return self.classifier.refusal()
