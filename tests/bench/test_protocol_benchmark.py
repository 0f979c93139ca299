"""bench/protocols: the gRPC request it sends is the tiny request, its gRPC load loop counts
real answers from a live server, and its summary's ratios are the medians' ratios."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.main import create_app
from app.oip_grpc.messages import input_tensors
from bench.harness.payloads import tiny_requests
from bench.protocols.protocol_benchmark import grpc_closed_loop, infer_request, summarize
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
        )
    ]
    summary = summarize(runs)
    assert summary["medians"]["grpc"]["rps"] == 380.0
    assert summary["grpc_over_http_rps"] == pytest.approx(380 / 450, abs=1e-3)
    assert summary["grpc_over_http_server_cpu"] == pytest.approx(2.5 / 2.1, abs=1e-3)
    assert summary["http_grpc_on_over_off_rps"] == pytest.approx(450 / 460, abs=1e-3)
