"""bench/protocols: the gRPC request it sends is the tiny request, its gRPC load loop counts
real answers from a live server, its OTLP sink receives a traced server's spans, and its
summary's ratios are the medians' ratios."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.oip_grpc.messages import input_tensors
from bench.harness.payloads import tiny_requests
from bench.protocols.protocol_benchmark import (
    grpc_closed_loop,
    infer_request,
    otlp_sink,
    server_env,
    summarize,
)
from tests.support.app_setup import make_settings
from tests.support.live_server import serving
from tests.support.server_process import free_port


def test_the_grpc_request_carries_the_tiny_request() -> None:
    requests = tiny_requests()
    tensors = {t.name: t for t in input_tensors(infer_request(requests))}
    assert tensors["image"].bytes_elements() == [requests.images[0].data]
    assert tensors["text"].bytes_elements() == [requests.texts[0].encode()]


def test_the_grpc_loop_counts_answers_from_a_live_server(tiny_bundle_dir: Path) -> None:
    port = free_port()
    with serving(create_app(make_settings(tiny_bundle_dir, grpc_port=port))):
        request = infer_request(tiny_requests())
        answered = asyncio.run(grpc_closed_loop(f"127.0.0.1:{port}", request, 4, 0.5))
    assert answered > 0


def test_the_sink_receives_a_traced_servers_spans(tiny_bundle_dir: Path) -> None:
    env = server_env(tiny_bundle_dir, 0, tracing=True)
    with otlp_sink() as sink, pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            if name.startswith("OTEL_"):
                patch.setenv(name, value)
        settings = make_settings(tiny_bundle_dir, tracing=True)
        with serving(create_app(settings)) as address:
            files = {"image": ("i.jpg", tiny_requests().images[0].data)}
            response = httpx.post(
                f"http://{address}/classify", files=files, data={"text": "a bird"}
            )
            assert response.status_code == 200
        assert sink.received > 0  # the lifespan's end flushed the spans


def test_the_summary_is_the_ratio_of_medians() -> None:
    runs = [
        {
            "system": system,
            "rps": rps,
            "server_cpu_ms_per_request": cpu,
            "client_cpu_ms_per_request": 0.5,
        }
        for system, rps, cpu in (
            ("http", 400.0, 2.0),
            ("http", 500.0, 2.2),
            ("http", 450.0, 2.1),
            ("grpc", 360.0, 2.6),
            ("grpc", 400.0, 2.4),
            ("grpc", 380.0, 2.5),
            ("http-grpc-off", 450.0, 2.1),
            ("http-grpc-off", 470.0, 2.0),
            ("http-grpc-off", 460.0, 2.0),
            ("http-tracing", 300.0, 3.0),
            ("http-tracing", 320.0, 3.1),
            ("http-tracing", 310.0, 3.3),
        )
    ]
    summary = summarize(runs)
    assert summary["medians"]["grpc"]["rps"] == 380.0
    assert summary["grpc_over_http_rps"] == pytest.approx(380 / 450, abs=1e-3)
    assert summary["grpc_over_http_server_cpu"] == pytest.approx(2.5 / 2.1, abs=1e-3)
    assert summary["http_grpc_on_over_off_rps"] == pytest.approx(450 / 460, abs=1e-3)
    assert summary["tracing_on_over_off_rps"] == pytest.approx(310 / 450, abs=1e-3)
    assert summary["tracing_on_over_off_server_cpu"] == pytest.approx(3.1 / 2.1, abs=1e-3)
