"""FUSIONSERVE_OVERLOAD_STATUS: overload refusals answer 429 instead of 503 where asked, with
Retry-After either way, on /classify, the Open Inference Protocol over HTTP and over gRPC
(RESOURCE_EXHAUSTED); not ready and stopping stay 503."""

from __future__ import annotations

import asyncio
from base64 import b64encode
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from pydantic import ValidationError
from tritonclient.grpc import service_pb2_grpc

from app.asgi.gate import GatedPaths, RawHeaders, RequestGate
from app.config.settings import Settings
from app.errors import MemoryBusy
from app.main import create_app
from app.memory.memory_budget import MemoryBudget
from app.preprocess.decode_pace import TIMED_BYTES
from tests.support.app_setup import make_settings
from tests.support.gated_service import Gate, default_runner, gated_app, ready_client
from tests.support.grpc_requests import typed_infer_request
from tests.support.images import encode_image, photo
from tests.support.live_server import serving
from tests.support.server_process import free_port

TEXT = {"text": "a cat"}
IMAGE = encode_image(photo(64, 48))
FILES = {"image": ("i.png", IMAGE)}
V2_BODY = {
    "inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64encode(IMAGE).decode()]},
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a cat"]},
    ],
}


def test_the_setting_takes_503_or_429(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().overload_status == 503
    monkeypatch.setenv("FUSIONSERVE_OVERLOAD_STATUS", "429")
    assert Settings().overload_status == 429
    monkeypatch.setenv("FUSIONSERVE_OVERLOAD_STATUS", "500")
    with pytest.raises(ValidationError, match="503 or 429"):
        Settings()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [503, 429])
async def test_admission_refusals_answer_the_configured_status(
    tiny_bundle_dir: Path, gate: Gate, status: int
) -> None:
    settings = make_settings(
        tiny_bundle_dir, max_in_flight=1, overload_status=status, retry_after_s=2
    )
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.hold()
        held = asyncio.create_task(client.post("/classify", files=FILES, data=TEXT))
        await gate.wait_entered()
        refused = await client.post("/classify", files=FILES, data=TEXT)
        infer = await client.post("/v2/models/tiny-test-bundle/infer", json=V2_BODY)
        gate.open.set()
        assert (await held).status_code == 200
        for response in (refused, infer):
            assert response.status_code == status
            assert response.headers["Retry-After"] == "2"
        assert refused.json()["error"]["code"] == "overloaded"
        metrics = (await client.get("/metrics")).text
        assert 'fusionserve_rejected_total{reason="overloaded"} 2.0' in metrics


@pytest.mark.anyio
async def test_a_decode_too_late_to_start_answers_429(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, overload_status=429, inline_decode_max_pixels=0)
    app = create_app(settings)
    async for client in ready_client(app):
        default_runner(app).decode_pace.learned("PNG", TIMED_BYTES, 1000.0)
        response = await client.post("/classify", files=FILES, data=TEXT)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "overloaded"
        assert "Retry-After" in response.headers


def test_a_full_body_budget_answers_429() -> None:
    budget = MemoryBudget(1000)
    gate = RequestGate(
        lambda scope, receive, send: None,  # type: ignore[arg-type,return-value]
        gated=[GatedPaths(["/classify"], None)],
        refusal=lambda: None,
        max_body_bytes=1000,
        body_memory=budget,
        overload_status=429,
    )
    assert budget.try_reserve(900)
    refusal = gate._refusal(RawHeaders([(b"content-length", b"500")]), 500, None)
    assert isinstance(refusal, MemoryBusy)
    assert refusal.status_code == 429


@pytest.mark.anyio
async def test_not_ready_stays_503_whatever_the_setting(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, overload_status=429)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.core.lifecycle.stop_accepting()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/classify", files=FILES, data=TEXT)
    assert response.status_code == 503, response.text


def test_grpc_overload_is_resource_exhausted_with_429(tiny_bundle_dir: Path, gate: Gate) -> None:
    port = free_port()
    settings = make_settings(
        tiny_bundle_dir, grpc_port=port, max_in_flight=1, overload_status=429, retry_after_s=2
    )
    app = gated_app(settings, gate)
    with serving(app), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = typed_infer_request("", image=IMAGE, text=b"a cat")
        gate.hold()
        held = stub.ModelInfer.future(request, timeout=30)
        assert gate.entered.wait(10)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request, timeout=10)
        refused: Any = raised.value
        gate.open.set()
        assert held.result(timeout=10).outputs
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "2") in refused.trailing_metadata()
