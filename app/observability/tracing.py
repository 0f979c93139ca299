"""OpenTelemetry tracing: off unless ``settings.tracing``; then an SDK tracer provider with a
batch span processor and the exporter the standard variables choose (``OTEL_TRACES_EXPORTER``
otlp, the default, or console; ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
``OTEL_TRACES_SAMPLER``... read by the SDK and the exporter themselves).

An incoming W3C ``traceparent`` (HTTP header, gRPC metadata) is continued. Spans, per
request: the request (HTTP ``POST /classify``..., gRPC ``ModelInfer``...), ``admission``,
``preprocess`` (decode and tokenise, one per item), ``queue_wait`` (one per item, from its
submission to its batch's start); per batch: ``batch`` (``batch.size``, a link to each item's
request span; a child of the first item's request) and under it ``image_encoder``,
``text_encoder`` and ``fusion_head``. So a lone request's trace holds the whole tree, and a
request batched with others finds the batch through its link.

Each app has its own ``Tracing`` (tests give theirs a provider with an in-memory exporter);
nothing is set globally.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app import __version__
from app.config.settings import Settings
from app.errors import StartupError

TRACER_NAME = "fusionserve"
_PROPAGATOR = TraceContextTextMapPropagator()


class _PairsGetter(Getter[Iterable[tuple[str, str]]]):
    """Reads a carrier of (key, value) pairs: ASGI headers decoded, gRPC metadata."""

    def get(self, carrier: Iterable[tuple[str, str]], key: str) -> list[str] | None:
        found = [value for name, value in carrier if name.lower() == key]
        return found or None

    def keys(self, carrier: Iterable[tuple[str, str]]) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _PairsGetter()


def incoming_context(pairs: Iterable[tuple[str, str]]) -> Context:
    """The trace context a request carries (``traceparent``, ``tracestate``), if any."""
    return _PROPAGATOR.extract(list(pairs), getter=_GETTER)


class Tracing:
    """The app's tracer, or None when tracing is off (callers then skip every span)."""

    def __init__(self, tracer: Tracer | None, provider: Any = None) -> None:
        self.tracer = tracer
        self._provider = provider

    @classmethod
    def from_settings(cls, settings: Settings, provider: Any = None) -> Tracing:
        """Off unless ``settings.tracing``; ``provider`` replaces the one built from the
        environment (tests)."""
        if not settings.tracing:
            return cls(None)
        if provider is None:
            provider = _provider_from_environment()
        return cls(provider.get_tracer(TRACER_NAME, __version__), provider)

    def shutdown(self) -> None:
        """Flush and stop the exporter (the end of the app's lifespan)."""
        if self._provider is not None:
            self._provider.shutdown()


def _provider_from_environment(environ: Mapping[str, str] = os.environ) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_* from the environment
    else:
        raise StartupError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r}: FusionServe exports to otlp or console"
        )
    name = environ.get("OTEL_SERVICE_NAME", TRACER_NAME)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
