"""The gRPC server: ``grpc.aio`` on the event loop that serves HTTP, started and stopped by
the app's lifespan. Each worker process of several binds the port too (gRPC sets
SO_REUSEPORT), so the kernel spreads calls across workers as it spreads HTTP connections."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from opentelemetry.trace import Tracer
from tritonclient.grpc import service_pb2_grpc

from app.asgi.auth import ApiKeys
from app.config.settings import Settings
from app.core.serving_core import ServingCore
from app.errors import RequestError, StartupError
from app.observability.metrics import Metrics
from app.oip_grpc.servicer import InferenceServicer

logger = logging.getLogger(__name__)


async def start_grpc_server(
    core: ServingCore,
    settings: Settings,
    keys: ApiKeys,
    metrics: Metrics | None,
    on_error: Callable[[RequestError], None] | None = None,
    tracer: Tracer | None = None,
) -> grpc.aio.Server:
    """Serve ``inference.GRPCInferenceService`` on ``settings.host:settings.grpc_port``;
    raises ``StartupError`` when the port cannot be bound. Messages are limited to
    ``max_body_bytes`` each way (a larger one gets RESOURCE_EXHAUSTED from gRPC itself)."""
    limit = settings.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 1),
        ]
    )
    servicer = InferenceServicer(core, settings, keys, metrics, on_error, tracer)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises when it cannot bind
        raise StartupError(f"gRPC could not listen on {address}: {exc}") from exc
    if port == 0:
        raise StartupError(f"gRPC could not listen on {address}")
    await server.start()
    logger.info("Open Inference Protocol over gRPC on %s", address)
    return server
