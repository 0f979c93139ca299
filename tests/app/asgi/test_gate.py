"""The memory budgets over HTTP: image decodes (413, wait, 503) and request bodies (503)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI
from PIL import Image
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from app.asgi.gate import GatedPaths, RawHeaders, RequestGate, _body_bytes
from app.config.settings import Settings
from app.core.engine import Engine, build_engine
from app.core.serving_core import ServingCore
from app.errors import Overloaded
from app.main import create_app
from app.memory.memory_budget import MemoryBudget
from app.preprocess.decode_pace import TIMED_BYTES
from app.preprocess.image import ImageDecoder
from tests.support.app_setup import make_settings
from tests.support.gated_service import default_runner, ready_client
from tests.support.images import encode_image, photo

pytestmark = pytest.mark.anyio
MiB = 2**20
TEXT = {"text": "a cat"}


def image_form(width: int = 64, height: int = 48, seed: int = 0) -> dict[str, tuple[str, bytes]]:
    return {"image": ("i.png", encode_image(photo(width, height, seed=seed)))}


class HeldDecoder(ImageDecoder):
    """Decodes as usual, except that a held decode (the first after ``hold``) waits for
    ``release`` with its memory reserved."""

    entered = threading.Event()
    released = threading.Event()
    held = False

    def _decode(self, image: Image.Image):  # type: ignore[no-untyped-def]
        cls = type(self)
        if cls.held:
            cls.held = False
            cls.entered.set()
            assert cls.released.wait(10), "the test never released the decode"
        return super()._decode(image)

    @classmethod
    def hold(cls) -> None:
        cls.held = True
        cls.entered.clear()
        cls.released.clear()


def held_decoding(settings: Settings) -> Engine:
    engine = build_engine(settings)
    real = engine.pipeline.decoder
    engine.pipeline.decoder = HeldDecoder(
        real.spec, max_pixels=real.max_pixels, min_side=real.min_side
    )
    return engine


def decode_memory_app(tiny_bundle_dir: Path, **overrides: object) -> FastAPI:
    # Every decode in the pool: a held decode must hold a pool thread, not the event loop.
    settings = make_settings(tiny_bundle_dir, inline_decode_max_pixels=0, **overrides)
    return create_app(settings, engine_factory=held_decoding)


def one_image_mib(tiny_bundle_dir: Path) -> int:
    """A decode memory budget (MiB) that holds one test image's decode, not two."""
    engine = build_engine(make_settings(tiny_bundle_dir, warmup=False))
    needed = engine.pipeline.decoder.peak_bytes(image_form()["image"][1])
    mib = needed // MiB + 1
    assert 2 * needed > mib * MiB
    return mib


async def test_an_image_over_the_decode_budget_is_413_naming_the_setting(
    tiny_bundle_dir: Path,
) -> None:
    app = decode_memory_app(tiny_bundle_dir, decode_memory_mb=1)  # under the fixed costs
    async for client in ready_client(app):
        response = await client.post("/classify", files=image_form(), data=TEXT)
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "image_too_large"
        assert "FUSIONSERVE_DECODE_MEMORY_MB" in error["message"]
        assert default_runner(app).decode_memory.used == 0


async def test_a_decode_waits_for_room_then_runs(tiny_bundle_dir: Path) -> None:
    app = decode_memory_app(tiny_bundle_dir, decode_memory_mb=one_image_mib(tiny_bundle_dir))
    async for client in ready_client(app):
        memory = default_runner(app).decode_memory
        HeldDecoder.hold()
        first = asyncio.create_task(client.post("/classify", files=image_form(), data=TEXT))
        assert await asyncio.to_thread(HeldDecoder.entered.wait, 10)
        second = asyncio.create_task(
            client.post("/classify", files=image_form(70, 50, seed=1), data=TEXT)
        )
        for _ in range(500):
            if memory.waiting:
                break
            await asyncio.sleep(0.01)
        assert memory.waiting == 1  # no room: waiting on the loop, not in a decode thread
        assert not second.done()
        HeldDecoder.released.set()
        assert (await first).status_code == 200
        assert (await second).status_code == 200
        assert memory.used == 0
        assert memory.waiting == 0


async def test_no_room_before_the_deadline_is_503_with_retry_after(
    tiny_bundle_dir: Path,
) -> None:
    app = decode_memory_app(
        tiny_bundle_dir,
        decode_memory_mb=one_image_mib(tiny_bundle_dir),
        request_timeout_s=0.5,
        retry_after_s=3,
    )
    async for client in ready_client(app):
        HeldDecoder.hold()
        first = asyncio.create_task(client.post("/classify", files=image_form(), data=TEXT))
        assert await asyncio.to_thread(HeldDecoder.entered.wait, 10)
        second = await client.post("/classify", files=image_form(70, 50), data=TEXT)
        assert second.status_code == 503
        assert second.headers["Retry-After"] == "3"
        assert second.json()["error"]["code"] == "memory_busy"
        assert (await first).status_code == 504  # held past its own deadline
        HeldDecoder.released.set()
        metrics = (await client.get("/metrics")).text
        assert 'fusionserve_rejected_total{reason="memory_busy"} 1.0' in metrics
        for _ in range(500):  # the held decode ends in its thread and gives its room back
            if default_runner(app).decode_memory.used == 0:
                break
            await asyncio.sleep(0.01)
        assert (await client.post("/classify", files=image_form(), data=TEXT)).status_code == 200


async def test_a_decode_that_cannot_end_before_the_deadline_is_not_started(
    tiny_bundle_dir: Path,
) -> None:
    app = decode_memory_app(tiny_bundle_dir)
    async for client in ready_client(app):
        default_runner(app).decode_pace.learned("PNG", TIMED_BYTES, 1000.0)  # ages
        HeldDecoder.hold()  # would block the test if the decode started
        response = await client.post("/classify", files=image_form(), data=TEXT)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "overloaded"
        assert "Retry-After" in response.headers
        assert not HeldDecoder.entered.is_set()
        HeldDecoder.held = False


# A 1 MiB body budget holds two 400 kB bodies, not a third of 700 kB.
BODY_LIMITS = {"max_body_bytes": 768 * 1024, "body_memory_mb": 1, "max_image_bytes": 768 * 1024}


def noisy_png(target_bytes: int) -> bytes:
    side = int((target_bytes / 3) ** 0.5)
    data = encode_image(photo(side, side, seed=9), "PNG", compress_level=0)
    assert 0.9 * target_bytes < len(data) < 1.2 * target_bytes
    return data


async def test_bodies_over_the_body_budget_get_503_until_room_is_back(
    tiny_bundle_dir: Path,
) -> None:
    app = decode_memory_app(tiny_bundle_dir, **BODY_LIMITS)
    image = noisy_png(400_000)
    async for client in ready_client(app):
        core: ServingCore = app.state.core
        assert core.body_memory is not None
        HeldDecoder.hold()  # the first request holds its body while its image decodes
        first = asyncio.create_task(
            client.post("/classify", files={"image": ("i.png", image)}, data=TEXT)
        )
        assert await asyncio.to_thread(HeldDecoder.entered.wait, 10)
        assert core.body_memory.used > 400_000
        second = await client.post("/classify", files={"image": ("i.png", image)}, data=TEXT)
        assert second.status_code == 200  # two fit
        third_body = {"image": ("i.png", image + image[:300_000])}  # still a PNG
        refused = await client.post("/classify", files=third_body, data=TEXT)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "memory_busy"
        assert "Retry-After" in refused.headers
        HeldDecoder.released.set()
        assert (await first).status_code == 200
        assert core.body_memory.used == 0
        again = await client.post("/classify", files=third_body, data=TEXT)
        assert again.status_code == 200


def test_body_reservation_is_the_declared_length_or_the_limit() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> RawHeaders:
        return RawHeaders(list(headers))

    assert _body_bytes(scope((b"content-length", b"1234")), 10_000) == 1234
    assert _body_bytes(scope(), 10_000) == 10_000  # chunked: as much as the limit
    compressed = scope((b"content-length", b"100"), (b"content-encoding", b"gzip"))
    assert _body_bytes(compressed, 10_000) == 10_000  # may inflate to the limit
    identity = scope((b"content-length", b"100"), (b"content-encoding", b"identity"))
    assert _body_bytes(identity, 10_000) == 100


def test_body_budget_must_hold_one_body() -> None:
    with pytest.raises(ValueError, match="body_memory_mb"):
        Settings(max_body_bytes=33 * MiB, body_memory_mb=32)
    assert Settings(max_body_bytes=32 * MiB, body_memory_mb=32).body_memory_mb == 32


async def test_a_refused_body_is_read_to_its_end_and_counted_for_the_trimmer() -> None:
    trims: list[int] = []

    class Counting(MemoryBudget):
        def passed_through(self, nbytes: int) -> None:
            trims.append(nbytes)

    async def never_called(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("a refused request reached the app")

    gate = RequestGate(
        never_called,
        gated=[GatedPaths(["/classify"], "multipart/form-data")],
        refusal=lambda: Overloaded("busy"),
        max_body_bytes=MiB,
        body_memory=Counting(4 * MiB),
    )
    chunks = [b"x" * 1000, b"y" * 500]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b")],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    await gate(scope, receive, send)
    assert sent[0]["status"] == 503
    assert chunks == []  # read to its end, so the client gets the answer
    assert trims == [1500]


def test_raw_headers_read_as_starlettes_do() -> None:
    raw = [
        (b"content-type", b"multipart/form-data; boundary=a"),
        (b"x-note", b"caf\xe9"),
        (b"content-type", b"text/plain"),
    ]
    ours, starlettes = RawHeaders(raw), Headers(raw=raw)
    for name in ("content-type", "x-note", "content-length"):
        assert ours.get(name, "none") == starlettes.get(name, "none")
    assert ours.get("content-type", "") == "multipart/form-data; boundary=a"  # the first
