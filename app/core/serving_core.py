"""The serving core: one entry point for every protocol. An adapter (REST's ``/classify`` and
``/classify/batch``, the Open Inference Protocol's ``/v2`` routes) parses and validates its
wire format into ``ClassifyInput`` items, calls ``ServingCore.classify`` and writes the
``ClassifyResult`` back in its own format; the core routes to the bundle, takes the lease
that a reload drains, and applies the lifecycle and admission whatever the protocol (after
MLServer's DataPlane)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from app.core.classification import ClassifyInput, ClassifyResult
from app.core.lifecycle import Lifecycle
from app.core.model_repository import ModelRepository
from app.core.model_runner import ModelRunner
from app.core.registry import ModelRegistry
from app.errors import ModelNotFound, RequestError, quoted_name
from app.memory.memory_budget import MemoryBudget


class PodReadiness(Protocol):
    """The pod's readiness, in a worker process of several
    (``app.workers.pod_status.PodStatus``)."""

    def not_ready(self) -> list[str]:
        """Each worker that is not ready, as ``worker N: status`` (empty: all are)."""
        ...


@dataclass
class ServingCore:
    """The service's lifecycle, its bundles and the memory budget of request bodies (which
    the request gate reserves from); in a worker process of several, the pod's status."""

    registry: ModelRegistry
    lifecycle: Lifecycle
    body_memory: MemoryBudget
    pod: PodReadiness | None = None
    repository: ModelRepository | None = None  # Triton's model repository extension

    def workers_not_ready(self) -> list[str]:
        """The other worker processes that are not ready (none with a single process)."""
        return [] if self.pod is None else self.pod.not_ready()

    def refusal(self) -> RequestError | None:
        """Why a classification request would be refused before its body is read, or None
        (the request gate's fast path). With one bundle its admission is known before
        parsing; with several, the bundle is named in the body, so each bundle's own
        admission decides after parsing."""
        if not self.lifecycle.accepting:
            return self.lifecycle.unavailable()
        slots = self.registry.slots
        if len(slots) == 1:
            runner = slots[0].runner
            if runner is None:
                return self.lifecycle.unavailable()
            return runner.refusal()
        if not any(s.runner is not None for s in slots):
            return self.lifecycle.unavailable()
        return None

    @contextmanager
    def lease(self, model: str | None = None, version: str | None = None) -> Iterator[ModelRunner]:
        """The runner serving ``model`` (the default bundle when None), at ``version`` if
        given, held until the request is answered so that a reload drains it: 503 while
        stopping or failed, 404 for a name or version not served, 503 while that bundle
        loads. Take it with no ``await`` between the lookup and the call it serves."""
        if not self.lifecycle.accepting:
            raise self.lifecycle.unavailable()
        with self.registry.lease(model) as runner:
            manifest = runner.engine.bundle.manifest
            if version is not None and version != manifest.version:
                raise ModelNotFound(
                    f"model '{manifest.name}' has no version {quoted_name(version)}; "
                    f"it has version {manifest.version}"
                )
            yield runner

    async def classify(
        self,
        items: Sequence[ClassifyInput],
        model: str | None = None,
        version: str | None = None,
        priority: int | None = None,
    ) -> ClassifyResult:
        """Classify ``items`` with the bundle ``model`` (at ``version``) at ``priority``
        (1 the most urgent; 0 or None the default): every item is admitted or the request is
        refused (raises); then each item is answered, or fails, on its own."""
        with self.lease(model, version) as runner:
            outcomes = await runner.classify(items, priority)
            return ClassifyResult(runner.engine.bundle.manifest, outcomes)
