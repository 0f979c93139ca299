"""OpenTelemetry tracing (``app.observability.tracing``) with an in-memory exporter: one trace per
request,
continuing the caller's ``traceparent``, with the expected span tree over HTTP and over gRPC;
nothing when tracing is off; the exporter chosen by OTEL_TRACES_EXPORTER."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import grpc
import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tritonclient.grpc import service_pb2_grpc

from app.errors import StartupError
from app.main import create_app
from app.observability.tracing import Tracing, _provider_from_environment
from tests.support.app_setup import make_settings, wait_ready
from tests.support.grpc_requests import typed_infer_request
from tests.support.images import encode_image, photo
from tests.support.live_server import serving
from tests.support.server_process import free_port, start_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
IMAGE = encode_image(photo(64, 48))
PER_ITEM = {"admission", "preprocess", "queue_wait", "batch"}
MODELS = {"image_encoder", "text_encoder", "fusion_head"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def _provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _tree(spans: tuple[ReadableSpan, ...], root_name: str) -> dict[str, list[str]]:
    """Children's names by parent name, for the trace of ``TRACE_ID``; checks the root."""
    ours = [s for s in spans if s.context is not None and f"{s.context.trace_id:032x}" == TRACE_ID]
    assert ours, [s.name for s in spans]
    by_id = {s.context.span_id: s for s in ours if s.context is not None}
    (root,) = [s for s in ours if s.name == root_name]
    assert root.parent is not None
    assert f"{root.parent.span_id:016x}" == PARENT_ID  # the caller's span
    assert root.parent.is_remote
    tree: dict[str, list[str]] = {}
    for span in ours:
        if span is root:
            continue
        assert span.parent is not None, span.name
        parent = by_id[span.parent.span_id]
        tree.setdefault(parent.name, []).append(span.name)
    return {name: sorted(children) for name, children in tree.items()}


def test_a_classify_request_is_one_trace_under_the_callers_span(
    tiny_bundle_dir: Path, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings(tiny_bundle_dir, tracing=True)
    app = create_app(settings, tracer_provider=_provider(exporter))
    with TestClient(app) as client:
        wait_ready(client)
        exporter.clear()  # the warm-up and readiness probes
        response = client.post(
            "/classify",
            files={"image": ("i.png", IMAGE)},
            data={"text": "a cat"},
            headers={"traceparent": TRACEPARENT},
        )
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    tree = _tree(spans, "POST /classify")
    assert tree == {"POST /classify": sorted(PER_ITEM), "batch": sorted(MODELS)}
    (batch,) = [s for s in spans if s.name == "batch"]
    (request,) = [s for s in spans if s.name == "POST /classify"]
    assert batch.attributes is not None
    assert batch.attributes["batch.size"] == 1
    assert [link.context.span_id for link in batch.links] == [request.context.span_id]
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 200


def test_a_request_without_traceparent_starts_its_own_trace(
    tiny_bundle_dir: Path, exporter: InMemorySpanExporter
) -> None:
    app = create_app(
        make_settings(tiny_bundle_dir, tracing=True), tracer_provider=_provider(exporter)
    )
    with TestClient(app) as client:
        wait_ready(client)
        exporter.clear()
        for text in ("a cat", "a dog"):
            client.post("/classify", files={"image": ("i.png", IMAGE)}, data={"text": text})
        assert client.get("/readyz").status_code == 200  # not traced
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert [s.name for s in roots] == ["POST /classify", "POST /classify"]
    assert roots[0].context.trace_id != roots[1].context.trace_id


def test_a_grpc_infer_is_one_trace_under_the_callers_span(
    tiny_bundle_dir: Path, exporter: InMemorySpanExporter
) -> None:
    port = free_port()
    settings = make_settings(tiny_bundle_dir, tracing=True, grpc_port=port)
    app = create_app(settings, tracer_provider=_provider(exporter))
    request = typed_infer_request("tiny-test-bundle", image=IMAGE, text=b"a cat")
    with serving(app), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        exporter.clear()
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(request, timeout=30, metadata=[("traceparent", TRACEPARENT)])
    root = "inference.GRPCInferenceService/ModelInfer"
    tree = _tree(exporter.get_finished_spans(), root)
    assert tree == {root: sorted(PER_ITEM), "batch": sorted(MODELS)}


def test_tracing_off_records_nothing(tiny_bundle_dir: Path, exporter: InMemorySpanExporter) -> None:
    settings = make_settings(tiny_bundle_dir)
    assert Tracing.from_settings(settings, _provider(exporter)).tracer is None
    app = create_app(settings, tracer_provider=_provider(exporter))
    with TestClient(app) as client:
        wait_ready(client)
        client.post("/classify", files={"image": ("i.png", IMAGE)}, data={"text": "a cat"})
    assert exporter.get_finished_spans() == ()


def test_a_global_provider_gets_no_spans_from_fastapi(
    tiny_bundle_dir: Path, exporter: InMemorySpanExporter
) -> None:
    """FastAPI's own OpenTelemetry layer stays off when a global tracer provider is set (by
    an agent, or OTEL_PYTHON_TRACER_PROVIDER): the service's spans are the only ones."""
    app = create_app(make_settings(tiny_bundle_dir))
    with (
        patch("opentelemetry.trace.get_tracer_provider", return_value=_provider(exporter)),
        TestClient(app) as client,
    ):
        wait_ready(client)
        response = client.post(
            "/classify", files={"image": ("i.png", IMAGE)}, data={"text": "a cat"}
        )
        assert response.status_code == 200
        assert client.get("/livez").status_code == 200
    assert exporter.get_finished_spans() == ()


def test_the_exporter_is_chosen_by_the_standard_variable() -> None:
    console = _provider_from_environment({"OTEL_TRACES_EXPORTER": "console"})
    otlp = _provider_from_environment({"OTEL_SERVICE_NAME": "shop-classifier"})
    assert otlp.resource.attributes["service.name"] == "shop-classifier"
    console.shutdown()
    otlp.shutdown()
    with pytest.raises(StartupError, match="otlp or console"):
        _provider_from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_the_documented_console_example(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """docs/operations.md's example: `fusionserve serve` with the console exporter prints the
    request's spans, in the caller's trace, by the time it has stopped."""
    env = {
        "FUSIONSERVE_TRACING": "true",
        "OTEL_TRACES_EXPORTER": "console",
        "FUSIONSERVE_GRPC_PORT": "0",
        "FUSIONSERVE_WORKERS": "1",
    }
    server = start_server(tiny_bundle_dir, tmp_path / "server.log", env)
    try:
        server.wait_ready()
        response = httpx.post(
            f"{server.base}/classify",
            files={"image": ("i.png", IMAGE)},
            data={"text": "a cat"},
            headers={"traceparent": TRACEPARENT},
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    printed = server.log_text()
    assert f'"trace_id": "0x{TRACE_ID}"' in printed
    for name in ("POST /classify", "admission", "preprocess", "queue_wait", "batch", *MODELS):
        assert f'"name": "{name}"' in printed, name
