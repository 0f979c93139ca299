"""The HTTP path through the dynamic batcher: real ASGI app, tiny bundle, a gated model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine, build_engine
from app.main import create_app
from app.preprocess.decode_budget import DecodeBudget
from tests.support.app_setup import make_settings
from tests.support.gated_service import (
    Gate,
    default_runner,
    gated_app,
    numbered_form,
    ready_client,
)
from tests.support.images import encode_image, photo

pytestmark = pytest.mark.anyio


async def test_batched_results_equal_solo_results(tiny_bundle_dir: Path, gate: Gate) -> None:
    app = gated_app(make_settings(tiny_bundle_dir), gate)
    async for client in ready_client(app):
        solo = []
        for i in range(5):
            files, data = numbered_form(i)
            solo.append((await client.post("/classify", files=files, data=data)).json())
        gate.hold()
        files, data = numbered_form(0)
        first = asyncio.create_task(client.post("/classify", files=files, data=data))
        await gate.wait_entered()
        rest = []
        for i in range(1, 5):
            files, data = numbered_form(i)
            rest.append(asyncio.create_task(client.post("/classify", files=files, data=data)))
        batcher = default_runner(app).batcher
        while batcher.queue_depth < 4:
            await asyncio.sleep(0.005)
        gate.open.set()
        batched = [r.json() for r in await asyncio.gather(first, *rest)]
        assert batcher.stats.sizes[4] == 1  # the four queued requests ran as one batch
        for alone, together in zip(solo, batched, strict=True):
            assert alone["label"] == together["label"]
            a = {p["label"]: p["probability"] for p in alone["predictions"]}
            b = {p["label"]: p["probability"] for p in together["predictions"]}
            for label, probability in a.items():
                assert b[label] == pytest.approx(probability, abs=1e-5)


async def test_overload_is_a_fast_503_with_retry_after(tiny_bundle_dir: Path, gate: Gate) -> None:
    settings = make_settings(tiny_bundle_dir, max_in_flight=2, max_batch_size=1, retry_after_s=3)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.hold()
        files, data = numbered_form(0)
        running = asyncio.create_task(client.post("/classify", files=files, data=data))
        await gate.wait_entered()
        queued = asyncio.create_task(client.post("/classify", files=files, data=data))
        batcher = default_runner(app).batcher
        while batcher.queue_depth < 1:
            await asyncio.sleep(0.005)
        refused = await client.post("/classify", files=files, data=data)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["code"] == "overloaded"
        # Health stays answerable while the model is saturated.
        assert (await client.get("/livez")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        gate.open.set()
        assert (await running).status_code == 200
        assert (await queued).status_code == 200


async def test_request_deadline_gives_504(tiny_bundle_dir: Path, gate: Gate) -> None:
    settings = make_settings(tiny_bundle_dir, request_timeout_s=0.2)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.open.clear()
        files, data = numbered_form(1)
        response = await client.post("/classify", files=files, data=data)
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
        gate.open.set()
        assert (await client.post("/classify", files=files, data=data)).status_code == 200


async def test_request_deadline_covers_decoding(tiny_bundle_dir: Path) -> None:
    release = threading.Event()

    def slow_decoding(settings: Settings) -> Engine:
        engine = build_engine(settings)
        real_prepare = engine.pipeline.prepare

        def prepare(
            image: bytes, text: str, explain: bool = False, budget: DecodeBudget | None = None
        ) -> PreparedItem:
            assert release.wait(10), "test never released decoding"
            return real_prepare(image, text, explain, budget)

        engine.pipeline.prepare = prepare  # type: ignore[method-assign]
        return engine

    # In the pool: the deadline covers a decode the event loop does not wait inside.
    settings = make_settings(
        tiny_bundle_dir, request_timeout_s=0.2, warmup=False, inline_decode_max_pixels=0
    )
    app = create_app(settings, engine_factory=slow_decoding)
    async for client in ready_client(app):
        files, data = numbered_form(1)
        response = await client.post("/classify", files=files, data=data)
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
        assert default_runner(app).in_flight == 0
        release.set()
        assert (await client.post("/classify", files=files, data=data)).status_code == 200


async def test_shutdown_answers_queued_requests(tiny_bundle_dir: Path, gate: Gate) -> None:
    app = gated_app(make_settings(tiny_bundle_dir), gate)
    files, data = numbered_form(2)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.01)
            gate.hold()
            requests = [
                asyncio.create_task(client.post("/classify", files=files, data=data))
                for _ in range(3)
            ]
            await gate.wait_entered()
            classifier = default_runner(app)
            while classifier.in_flight < 3:  # all three accepted
                await asyncio.sleep(0.005)
            threading.Timer(0.1, gate.open.set).start()
    # The lifespan exit (shutdown) waited for every accepted request.
    responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [200, 200, 200]


async def _request_then_leave(
    app: FastAPI, files: object, data: dict[str, str], left: asyncio.Event
) -> None:
    """Send one request straight to the ASGI app; its client disconnects once ``left`` is set."""
    built = httpx.Request("POST", "http://test/classify", files=files, data=data)  # type: ignore[arg-type]
    body = built.read()
    delivered = False

    async def receive() -> dict[str, object]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        pass

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/classify",
        "raw_path": b"/classify",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in built.headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]


async def test_disconnected_client_is_not_computed(tiny_bundle_dir: Path, gate: Gate) -> None:
    app = gated_app(make_settings(tiny_bundle_dir), gate)
    async for client in ready_client(app):
        batcher = default_runner(app).batcher
        gate.hold()
        files, data = numbered_form(0)
        running = asyncio.create_task(client.post("/classify", files=files, data=data))
        await gate.wait_entered()

        # A raw ASGI request whose client goes away while its item is queued.
        files, data = numbered_form(3)
        left = asyncio.Event()
        gone = asyncio.create_task(_request_then_leave(app, files, data, left))
        while batcher.queue_depth < 1:
            await asyncio.sleep(0.005)
        left.set()
        await asyncio.wait_for(gone, 5)  # the handler returns once the client has left
        gate.open.set()
        assert (await running).status_code == 200
        assert (await client.post("/classify", files=files, data=data)).status_code == 200
        assert batcher.stats.skipped == 1  # the queued item of the departed client
        assert batcher.stats.items == 2  # the first request and the last one only


async def test_admission_limit_refuses_before_decoding(tiny_bundle_dir: Path, gate: Gate) -> None:
    settings = make_settings(tiny_bundle_dir, max_in_flight=2, retry_after_s=2)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.hold()
        files, data = numbered_form(0)
        admitted = [
            asyncio.create_task(client.post("/classify", files=files, data=data)) for _ in range(2)
        ]
        classifier = default_runner(app)
        while classifier.in_flight < 2:
            await asyncio.sleep(0.005)
        refused = await client.post("/classify", files=files, data=data)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        assert "limit is 2" in refused.json()["error"]["message"]
        batch = await client.post(
            "/classify/batch",
            files=[("images", ("a.png", files["image"][1], "image/png"))],
            data={"texts": ["a cat"]},
        )
        assert batch.status_code == 503
        gate.open.set()
        assert [r.status_code for r in await asyncio.gather(*admitted)] == [200, 200]
        assert classifier.stats()["rejected"] == 2
        assert (await client.post("/classify", files=files, data=data)).status_code == 200


async def test_refusal_comes_before_the_body_is_parsed(tiny_bundle_dir: Path, gate: Gate) -> None:
    settings = make_settings(tiny_bundle_dir, max_in_flight=1, max_body_bytes=65536)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        gate.hold()
        files, data = numbered_form(0)
        admitted = asyncio.create_task(client.post("/classify", files=files, data=data))
        await gate.wait_entered()
        # A body that is not multipart at all: parsing it would give 400/422, so a 503
        # proves the gate answered without parsing.
        junk = {"Content-Type": "multipart/form-data; boundary=x"}
        refused = await client.post("/classify", content=b"not multipart", headers=junk)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"] == "1"
        # Discarding is bounded: a body over max_body_bytes is a 413 and the connection closes.
        huge = await client.post("/classify", content=b"x" * 70000, headers=junk)
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "payload_too_large"
        assert huge.headers["connection"] == "close"
        # Other routes are not gated.
        assert (await client.get("/info")).status_code == 200
        gate.open.set()
        assert (await admitted).status_code == 200
        # Below the limit again: the same junk body now reaches the parser.
        assert (await client.post("/classify", content=b"junk", headers=junk)).status_code == 400


async def test_not_ready_refuses_without_parsing(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)  # no lifespan: the bundle never loads
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        junk = {"Content-Type": "multipart/form-data; boundary=x"}
        response = await client.post("/classify", content=b"junk", headers=junk)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_ready"


async def test_body_over_the_limit_is_413_in_the_envelope(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, max_body_bytes=2048)
    app = create_app(settings)
    async for client in ready_client(app):
        files, data = numbered_form(3)
        assert len(files["image"][1]) > 2048
        response = await client.post("/classify", files=files, data=data)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert response.headers["connection"] == "close"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            yield (
                b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                b"Content-Type: image/png\r\n\r\n"
            )
            for _ in range(8):
                yield b"y" * 1024

        junk = {"Content-Type": "multipart/form-data; boundary=x"}
        streamed = await client.post("/classify", content=chunks(), headers=junk)
        assert streamed.status_code == 413
        small = {"image": ("s.png", encode_image(photo(16, 16)), "image/png")}
        assert (await client.post("/classify", files=small, data=data)).status_code == 200
