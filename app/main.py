"""Application factory. Nothing is loaded at import time: models load in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import grpc
from fastapi import FastAPI

from app import __version__
from app.asgi import metrics_route
from app.asgi.auth import install_auth, load_api_keys
from app.asgi.direct_routes import ServiceApp
from app.asgi.error_responses import ErrorListener, install_error_handlers
from app.asgi.gate import GatedPaths, RequestGate
from app.asgi.http_metrics import HttpMetricsMiddleware
from app.asgi.request_id import RequestIdMiddleware
from app.asgi.trace_requests import TraceRequests
from app.config.settings import Settings
from app.core.engine import build_engine
from app.core.lifecycle import Lifecycle, Status
from app.core.model_repository import ModelRepository
from app.core.observer import ServiceObserver
from app.core.registry import EngineFactory, ModelRegistry
from app.core.serving_core import ServingCore
from app.memory.memory_budget import MemoryBudget
from app.memory.memory_trim import MemoryTrimmer
from app.observability.logging_setup import setup_logging
from app.observability.metrics import Metrics
from app.observability.tracing import Tracing
from app.oip import repository_routes
from app.oip.error_bodies import V2ErrorBodies
from app.oip.http_routes import INFER_ROUTE, V2_HEALTH_PATHS, is_infer_path
from app.oip.http_routes import router as v2_router
from app.rest import bundle_routes, demo
from app.rest.demo import DEMO_PATHS
from app.rest.routes import CLASSIFY_PATHS, HEALTH_PATHS, router
from app.workers.pod_reloads import PodReloads, follow_reloads
from app.workers.pod_status import PodStatus

if TYPE_CHECKING:
    from app.workers.pod_metrics import PodState

logger = logging.getLogger(__name__)


def _terminate() -> None:
    # Under a plain `uvicorn --factory` run this is a graceful stop; the CLI passes its own hook.
    signal.raise_signal(signal.SIGTERM)


async def _load(
    registry: ModelRegistry,
    settings: Settings,
    on_startup_failure: Callable[[], None],
    reloads: PodReloads | None,
) -> None:
    """Load every bundle, the default first; each serves as soon as it is warm. Any failure
    fails the service: a replica without one of its bundles is not one to route to. A worker
    of several counts the reloads announced so far as done: it reads the files as they are."""
    try:
        registry.declare()
        if reloads is not None:
            reloads.catch_up()  # the files are read now: any earlier reload is in them
        for slot in registry.slots:
            await registry.load(slot)
    except Exception as exc:
        registry.lifecycle.failed(str(exc))
        logger.critical("start-up failed: %s", exc)
        if settings.exit_on_startup_failure:
            on_startup_failure()
        return
    registry.lifecycle.loaded()


async def _follow_reloads(
    registry: ModelRegistry, loader: asyncio.Task[None], reloads: PodReloads
) -> None:
    """Once loaded, do the reloads the other workers announce (until cancelled)."""
    await asyncio.shield(loader)
    if registry.lifecycle.status is not Status.READY:
        return

    async def reload(bundle: int) -> None:
        await registry.reload(registry.slots[bundle].name)

    await follow_reloads(reloads, reload)


def _lifespan(
    registry: ModelRegistry,
    settings: Settings,
    on_startup_failure: Callable[[], None],
    pod: PodStatus | None,
    pod_state: PodState | None,
    start_grpc: Callable[[], Awaitable[grpc.aio.Server]] | None,
    tracing: Tracing,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Load in the background while serving (a worker that replaces one: before serving);
    on shutdown stop accepting, answer what was accepted and stop. In a worker of several,
    also keep the pod's metrics fresh and follow the other workers' reloads. With
    ``start_grpc``, the gRPC server runs beside HTTP and stops first, its calls in progress
    given ``shutdown_grace_s`` to end."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reloads = None if pod is None else pod.reloads
        loader = asyncio.create_task(_load(registry, settings, on_startup_failure, reloads))
        if pod is not None and pod.replacement:
            # A worker started again while the pod serves: the kernel would hand it
            # connections as soon as it listens, so it listens only once it can answer.
            await loader
        grpc_server = None if start_grpc is None else await start_grpc()
        background = []
        if pod_state is not None:
            background.append(asyncio.create_task(pod_state.keep_fresh()))
        if reloads is not None:
            background.append(asyncio.create_task(_follow_reloads(registry, loader, reloads)))
        try:
            yield
        finally:
            registry.lifecycle.stop_accepting()
            if grpc_server is not None:
                await grpc_server.stop(settings.shutdown_grace_s)
            for task in background:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
            await registry.stop()
            tracing.shutdown()

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    engine_factory: EngineFactory = build_engine,
    on_startup_failure: Callable[[], None] = _terminate,
    pod: PodStatus | None = None,
    tracer_provider: Any = None,
) -> FastAPI:
    """Build the FastAPI app. The bundle loads in the background; /readyz says when it is done.

    If loading fails and ``exit_on_startup_failure`` is set, ``on_startup_failure`` stops the
    server so that an orchestrator restarts it rather than routing to a dead replica.
    Raises ``StartupError`` if the API key file cannot be read.

    Logging is left alone unless ``settings.configure_logging`` is set (see
    app.observability.logging_setup).
    A worker process of several (``app.workers.worker_pool``) passes its ``pod`` status: readiness
    then waits for every worker. ``tracer_provider`` replaces the OpenTelemetry provider made
    from the environment when ``settings.tracing`` is on (tests).
    """
    settings = settings or Settings()
    if settings.configure_logging:
        setup_logging(settings.log_level, settings.log_format, access_log=settings.access_log)
    metrics: Metrics | None = None

    def observer_for(bundle: str) -> ServiceObserver | None:
        return metrics.observer(bundle) if metrics is not None else None

    # Process-wide memory budgets; the trimmer hands freed memory back after bursts.
    trimmer = MemoryTrimmer()
    decode_memory = MemoryBudget(settings.decode_memory_mb * 2**20, trimmer)
    body_memory = MemoryBudget(settings.body_memory_mb * 2**20, trimmer)
    lifecycle = Lifecycle(on_change=None if pod is None else pod.publish)
    tracing = Tracing.from_settings(settings, tracer_provider)
    registry = ModelRegistry(
        settings, engine_factory, observer_for, decode_memory, lifecycle, tracing.tracer
    )
    repository = ModelRepository(registry, settings.model_repository, pod is not None)
    core = ServingCore(registry, lifecycle, body_memory, pod, repository)
    pod_state: PodState | None = None
    if settings.metrics_enabled and pod is not None and pod.metrics_dir is not None:
        from app.workers.pod_metrics import PodState as WorkerPodState  # a worker of several only

        pod_state = WorkerPodState(core, pod.metrics_dir)
    metrics = Metrics(core, pod_state) if settings.metrics_enabled else None

    keys = load_api_keys(settings)
    on_error: ErrorListener | None = metrics.count_error if metrics is not None else None
    start_grpc = None
    if settings.grpc_port:

        async def start_grpc() -> grpc.aio.Server:
            from app.oip_grpc.grpc_server import start_grpc_server

            return await start_grpc_server(core, settings, keys, metrics, on_error, tracing.tracer)

    lifespan = _lifespan(
        registry, settings, on_startup_failure, pod, pod_state, start_grpc, tracing
    )

    app = ServiceApp(
        title="FusionServe",
        version=__version__,
        summary="Image + text classification on ONNX Runtime",
        lifespan=lifespan,
        # The service traces, measures and logs its requests itself (app.observability).
        # FastAPI's own OpenTelemetry layer, on as soon as a global provider is configured,
        # would add a second server span and metrics, and looks the providers up (three
        # environment reads) on every request to find out.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.core = core
    app.state.metrics = metrics
    app.state.error_listener = on_error
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(bundle_routes.router)
    app.include_router(v2_router)
    app.include_router(repository_routes.router)
    if metrics is not None:
        app.include_router(metrics_route.router)
    if settings.demo_enabled:
        app.include_router(demo.build_router())
    # Added innermost first: the request id is outermost, so that every answer carries it.
    app.add_middleware(
        RequestGate,
        gated=[
            GatedPaths(CLASSIFY_PATHS, "multipart/form-data"),
            # The Open Inference Protocol's infer reads its body itself.
            GatedPaths(is_infer_path, None),
        ],
        refusal=core.refusal,
        max_body_bytes=settings.max_body_bytes,
        body_memory=body_memory,
        retry_after_s=settings.retry_after_s,
        overload_status=settings.overload_status,
        on_error=on_error,
    )
    probes = [*HEALTH_PATHS, *V2_HEALTH_PATHS, *(DEMO_PATHS if settings.demo_enabled else ())]
    install_auth(app, settings, probes, keys)  # outside the gate: no key, no 503, no parsing
    app.add_middleware(V2ErrorBodies)  # outside auth and the gates: their errors too
    if metrics is not None:
        # Paths of the routes a request may be refused on before routing (app.routes does
        # not list included routes one by one).
        routers = (router, bundle_routes.router, v2_router, metrics_route.router)
        paths = [getattr(r, "path", "") for rt in routers for r in rt.routes]
        app.add_middleware(HttpMetricsMiddleware, observer=metrics, paths=paths)
    app.add_middleware(RequestIdMiddleware, max_length=settings.request_id_max_length)
    if tracing.tracer is not None:  # outermost: the span covers the whole request
        app.add_middleware(
            TraceRequests,
            tracer=tracing.tracer,
            traced=lambda path: path in CLASSIFY_PATHS or is_infer_path(path),
            route=lambda path: path if path in CLASSIFY_PATHS else INFER_ROUTE,
        )
    return app
