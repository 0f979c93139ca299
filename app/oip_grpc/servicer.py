"""``inference.GRPCInferenceService``: a thin adapter over the serving core, as the HTTP
routes of ``app.oip.http_routes`` are. Health, server and model metadata, model readiness,
inference and the model repository extension (``app.core.model_repository``); the other calls of
Triton's service answer UNIMPLEMENTED (the base class's).

Every call but ServerLive and ServerReady needs an API key when keys are configured
(``authorization: Bearer <key>`` metadata, as HTTP). Inference goes through
``ServingCore.classify``: the same admission, limits, lifecycle and metrics as HTTP; the
call's deadline, when shorter, bounds the request's. Errors become status codes by
``app.oip_grpc.status_codes``, with the service's message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from opentelemetry.trace import Status as SpanStatus
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app import __version__
from app.asgi.auth import ApiKeys
from app.config.settings import Settings
from app.core.classification import ClassifiedItem
from app.core.lifecycle import Status
from app.core.model_repository import ModelRepository
from app.core.serving_core import ServingCore
from app.errors import (
    DeadlineExceeded,
    InvalidTensor,
    RepositoryDisabled,
    RequestError,
    Unauthorized,
)
from app.observability.metrics import Metrics
from app.observability.tracing import incoming_context
from app.oip.classifier_model import ItemFailed, Limits, output_tensors, request_items
from app.oip_grpc.messages import (
    infer_response,
    input_tensors,
    metadata_response,
    request_priority,
    requested_outputs,
)
from app.oip_grpc.status_codes import status_code, trailing_metadata

SERVER_NAME = "fusionserve"
EXTENSIONS = ["binary_tensor_data"]
BEARER = "bearer "

Reply = TypeVar("Reply")


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The Open Inference Protocol's gRPC service on ``core``."""

    def __init__(
        self,
        core: ServingCore,
        settings: Settings,
        keys: ApiKeys,
        metrics: Metrics | None,
        on_error: Callable[[RequestError], None] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._core = core
        self._tracer = tracer
        self._limits = Limits.from_settings(settings)
        self._timeout_s = settings.request_timeout_s
        self._keys = keys
        self._metrics = metrics
        self._on_error = on_error

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's names)
        live = self._core.lifecycle.status is not Status.FAILED
        return await self._answer("ServerLive", context, lambda: _now(_live(live)), open_=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        core = self._core
        ready = core.lifecycle.status is Status.READY and not core.workers_not_ready()
        return await self._answer("ServerReady", context, lambda: _now(_ready(ready)), open_=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        response = service_pb2.ServerMetadataResponse(
            name=SERVER_NAME, version=__version__, extensions=EXTENSIONS
        )
        return await self._answer("ServerMetadata", context, lambda: _now(response))

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def ready() -> Any:
            """Ready, or not (as HTTP's 404 and 503 read by a client): never an error."""
            try:
                with self._core.lease(request.name or None, request.version or None):
                    return service_pb2.ModelReadyResponse(ready=True)
            except RequestError:
                return service_pb2.ModelReadyResponse(ready=False)

        return await self._answer("ModelReady", context, ready)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def metadata() -> Any:
            with self._core.lease(request.name or None, request.version or None) as runner:
                return metadata_response(runner.engine.bundle.manifest)

        return await self._answer("ModelMetadata", context, metadata)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await self._answer("ModelInfer", context, lambda: self._infer(request, context))

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def index() -> Any:
            entries = self._repository().index(ready_only=request.ready)
            response = service_pb2.RepositoryIndexResponse()
            for entry in entries:
                response.models.add(
                    name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
                )
            return response

        return await self._answer("RepositoryIndex", context, index)

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def load() -> Any:
            _refuse_parameters(request.parameters)
            await self._repository().load(request.model_name)
            return service_pb2.RepositoryModelLoadResponse()

        return await self._answer("RepositoryModelLoad", context, load)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def unload() -> Any:
            _refuse_parameters(request.parameters, allowed=("unload_dependents",))
            await self._repository().unload(request.model_name)
            return service_pb2.RepositoryModelUnloadResponse()

        return await self._answer("RepositoryModelUnload", context, unload)

    def _repository(self) -> ModelRepository:
        if self._core.repository is None:
            raise RepositoryDisabled("the model repository extension is not available")
        return self._core.repository

    async def _infer(self, request: Any, context: Any) -> Any:
        name, version = request.model_name or None, request.model_version or None
        inputs = input_tensors(request)
        names = requested_outputs(request)
        with self._core.lease(name, version) as runner:  # the head the inputs are checked on
            head = runner.engine.bundle.manifest.fusion_head
        items = request_items(inputs, head, self._limits)
        remaining = context.time_remaining()
        timeout = self._timeout_s if remaining is None else min(remaining, self._timeout_s)
        try:
            async with asyncio.timeout(timeout):
                priority = request_priority(request)
                result = await self._core.classify(items, name, version, priority)
        except TimeoutError:
            raise DeadlineExceeded("the call's deadline passed before it was answered") from None
        answered: list[ClassifiedItem] = []
        for index, outcome in enumerate(result.items):
            if isinstance(outcome, RequestError):
                self._report(outcome)
                raise ItemFailed(index, outcome)
            answered.append(outcome)
        outputs = output_tensors(answered, result.manifest)
        return infer_response(result.manifest, request.id, outputs, names)

    async def _answer(
        self,
        method: str,
        context: Any,
        call: Callable[[], Awaitable[Reply]],
        *,
        open_: bool = False,
    ) -> Reply:
        """Run ``call`` for ``method``: authenticated unless ``open_``, errors aborted with
        their code, every answer counted."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        span = None
        if self._tracer is not None:  # continues a traceparent from the call's metadata
            metadata = [
                (k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)
            ]
            span = self._tracer.start_span(
                f"inference.GRPCInferenceService/{method}",
                context=incoming_context(metadata),
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.method": method},
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        try:
            if not open_ and len(self._keys) and not self._keys.accepts(_bearer(context)):
                raise Unauthorized()
            return await call()
        except RequestError as error:
            self._report(error)
            code = status_code(error)
            await context.abort(code, error.message, trailing_metadata(error))
            raise  # abort raises; this line is not reached
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            if self._metrics is not None:
                self._metrics.observe_grpc(method, code.name, time.perf_counter() - started)
            if span is not None:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code is not grpc.StatusCode.OK:
                    span.set_status(SpanStatus(StatusCode.ERROR, code.name))
                span.end()
                otel_context.detach(token)

    def _report(self, error: RequestError) -> None:
        if self._on_error is not None:
            self._on_error(error)


def _refuse_parameters(parameters: Any, allowed: tuple[str, ...] = ()) -> None:
    """Triton's ``config`` and ``file:`` parameters override a model's files: not here."""
    if set(parameters) - set(allowed):
        raise InvalidTensor(
            "load and unload take no parameters here (config and file overrides are not supported)"
        )


def _bearer(context: Any) -> bytes | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            if value[: len(BEARER)].lower() == BEARER:
                return value[len(BEARER) :].strip().encode()
            return None
    return None


def _live(live: bool) -> Any:
    return service_pb2.ServerLiveResponse(live=live)


def _ready(ready: bool) -> Any:
    return service_pb2.ServerReadyResponse(ready=ready)


async def _now(value: Reply) -> Reply:
    return value
