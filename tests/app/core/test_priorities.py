"""Request priority: the batcher's order (fake clock: most urgent first, arrival order within
a level, the aging bound on starvation), admission's refusal order (fake pace: the least
urgent refused first), the levels of /classify, /classify/batch, the Open Inference Protocol
over HTTP and gRPC, and the settings."""

from __future__ import annotations

import asyncio
from base64 import b64encode
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError
from tritonclient.grpc import service_pb2, service_pb2_grpc

from app.config.settings import Settings
from app.core.admission import Admission, AdmissionLimits, ItemPace
from app.core.batching import Batcher
from app.core.lifecycle import Lifecycle
from tests.support.app_setup import make_settings
from tests.support.fake_batching import FakeClock, FakeModel, wait_queued
from tests.support.gated_service import Gate, gated_app, ready_client
from tests.support.grpc_requests import typed_infer_request
from tests.support.images import encode_image, photo
from tests.support.live_server import serving
from tests.support.server_process import free_port

IMAGE = encode_image(photo(64, 48))
FILES = {"image": ("i.png", IMAGE)}
AGING_S = 5.0


@pytest.fixture
async def batcher(model: FakeModel, clock: FakeClock) -> AsyncIterator[Batcher[int, int]]:
    with ThreadPoolExecutor(1) as executor:
        b: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=3, clock=clock, levels=3, aging_s=AGING_S
        )
        b.start()
        yield b
        model.gate.set()
        await b.stop()


async def _busy(batcher: Batcher[int, int], model: FakeModel) -> asyncio.Task[int]:
    """Hold the model on one item so that the next submissions queue."""
    model.hold()
    first = asyncio.create_task(batcher.submit(0, timeout_s=60))
    await model.wait_entered()
    return first


@pytest.mark.anyio
async def test_the_most_urgent_items_are_batched_first_in_arrival_order(
    batcher: Batcher[int, int], model: FakeModel
) -> None:
    first = await _busy(batcher, model)
    order = [(2, 21), (0, 1), (1, 11), (0, 2), (2, 22), (1, 12)]  # (level, item)
    tasks = [asyncio.create_task(batcher.submit(i, 60, level)) for level, i in order]
    await wait_queued(batcher, 6)
    model.gate.set()
    await asyncio.gather(first, *tasks)
    assert model.calls == [[0], [1, 2, 11], [12, 21, 22]]


@pytest.mark.anyio
async def test_an_item_waiting_aging_s_is_served_before_fresher_urgent_ones(
    batcher: Batcher[int, int], model: FakeModel, clock: FakeClock
) -> None:
    first = await _busy(batcher, model)
    old = asyncio.create_task(batcher.submit(99, 60, level=2))
    await wait_queued(batcher, 1)
    clock.now += AGING_S  # the least urgent item has now waited the bound
    urgent = [asyncio.create_task(batcher.submit(i, 60, level=0)) for i in (1, 2, 3)]
    await wait_queued(batcher, 4)
    model.gate.set()
    await asyncio.gather(first, old, *urgent)
    assert model.calls == [[0], [99, 1, 2], [3]]


@pytest.mark.anyio
async def test_below_the_bound_urgent_items_go_first(
    batcher: Batcher[int, int], model: FakeModel, clock: FakeClock
) -> None:
    first = await _busy(batcher, model)
    old = asyncio.create_task(batcher.submit(99, 60, level=2))
    await wait_queued(batcher, 1)
    clock.now += AGING_S - 0.001
    urgent = [asyncio.create_task(batcher.submit(i, 60, level=0)) for i in (1, 2, 3)]
    await wait_queued(batcher, 4)
    model.gate.set()
    await asyncio.gather(first, old, *urgent)
    assert model.calls == [[0], [1, 2, 3], [99]]


@pytest.mark.anyio
async def test_a_level_outside_the_batcher_is_refused(batcher: Batcher[int, int]) -> None:
    with pytest.raises(ValueError, match="level 3 of 3"):
        await batcher.submit(1, 60, level=3)


def _admission(levels: int = 3, in_flight: int = 0, item_s: float | None = None) -> Admission:
    limits = AdmissionLimits(
        max_in_flight=12,
        max_queue_wait_s=3.0,
        request_timeout_s=30.0,
        retry_after_s=1,
        priority_levels=levels,
    )
    pace = ItemPace()
    if item_s is not None:
        pace.observe(1, item_s)  # measured
    admission = Admission(limits, pace, Lifecycle())
    admission.lifecycle.loaded()
    admission.in_flight = in_flight
    return admission


def test_under_overload_the_least_urgent_are_refused_first() -> None:
    # In-flight ceiling: 12, 8 and 4 items for the three levels.
    admission = _admission(in_flight=4)
    assert admission.refusal(1, level=0) is None
    assert admission.refusal(1, level=1) is None
    refused = admission.refusal(1, level=2)
    assert refused is not None
    assert "the limit for priority 3 is 4" in refused.message
    admission.in_flight = 8
    assert admission.refusal(1, level=0) is None
    assert admission.refusal(1, level=1) is not None
    # Predicted wait: 3 s, 2 s and 1 s for the three levels, at 0.5 s per item.
    paced = _admission(in_flight=3, item_s=0.5)  # 1.5 s of work ahead
    assert paced.refusal(1, level=1) is None
    refused = paced.refusal(1, level=2)
    assert refused is not None
    assert "request for priority 3 wait" in refused.message
    assert paced.rejected == 1


def test_one_level_is_todays_admission() -> None:
    admission = _admission(levels=1, in_flight=11)
    assert admission.refusal(1) is None
    refused = admission.refusal(2)
    assert refused is not None
    assert "the limit is 12" in refused.message


def test_the_settings_bound_the_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.priority_levels, settings.default_priority) == (3, 1)
    monkeypatch.setenv("FUSIONSERVE_PRIORITY_LEVELS", "2")
    monkeypatch.setenv("FUSIONSERVE_DEFAULT_PRIORITY", "3")
    with pytest.raises(ValidationError, match="default_priority"):
        Settings()


@pytest.mark.anyio
async def test_priority_over_rest_and_oip_decides_who_is_refused(
    tiny_bundle_dir: Path, gate: Gate
) -> None:
    # max_in_flight 3 over 3 levels: ceilings of 3, 2 and 1 items.
    settings = make_settings(tiny_bundle_dir, max_in_flight=3, max_batch_wait_ms=0)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.hold()
        held = asyncio.create_task(
            client.post("/classify", files=FILES, data={"text": "a cat", "priority": "1"})
        )
        await gate.wait_entered()
        low = await client.post("/classify", files=FILES, data={"text": "a cat", "priority": "3"})
        assert low.status_code == 503
        assert "priority 3" in low.json()["error"]["message"]
        body = {
            "parameters": {"priority": 3},
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [b64encode(IMAGE).decode()],
                },
                {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a cat"]},
            ],
        }
        assert (
            await client.post("/v2/models/tiny-test-bundle/infer", json=body)
        ).status_code == 503
        urgent = asyncio.create_task(
            client.post("/classify", files=FILES, data={"text": "a dog", "priority": "2"})
        )
        batch = {"texts": ["a cat"], "priority": "9"}
        files = [("images", ("i.png", IMAGE))]
        out_of_range = await client.post("/classify/batch", files=files, data=batch)
        assert out_of_range.status_code == 422
        assert "priority must be 0" in out_of_range.json()["error"]["message"]
        gate.open.set()
        assert (await held).status_code == 200
        assert (await urgent).status_code == 200
        body["parameters"] = {"priority": 3}
        assert (
            await client.post("/v2/models/tiny-test-bundle/infer", json=body)
        ).status_code == 200


def test_priority_over_grpc(tiny_bundle_dir: Path, gate: Gate) -> None:
    port = free_port()
    settings = make_settings(tiny_bundle_dir, grpc_port=port, max_in_flight=3)
    app = gated_app(settings, gate)

    def request(priority: int | None) -> service_pb2.ModelInferRequest:
        message = typed_infer_request("tiny-test-bundle", image=IMAGE, text=b"a cat")
        if priority is not None:
            message.parameters["priority"].uint64_param = priority
        return message

    with serving(app), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        gate.hold()
        held = stub.ModelInfer.future(request(None), timeout=30)
        assert gate.entered.wait(10)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request(3), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        bad = request(None)
        bad.parameters["priority"].string_param = "high"
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(bad, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        gate.open.set()
        assert held.result(timeout=10).outputs
        assert stub.ModelInfer(request(3), timeout=10).outputs
