"""No request leaves reference cycles behind, answered or refused.

Objects in a cycle are freed only by the cyclic garbage collector, and a refused request's
cycle runs through its error's traceback to the frames that hold its body and image: memory
that outlives the answer until a collection comes (which the service makes rarer:
``gc_young_threshold``). Each case is sent with the collector off; afterwards a collection
must find nothing. The requests go straight into the ASGI app (``tests.support.asgi_calls``):
a client library's own objects would be counted too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from tests.support.app_setup import make_settings
from tests.support.asgi_calls import asgi_call
from tests.support.images import encode_image, photo

pytestmark = pytest.mark.anyio

JPEG = encode_image(photo(64, 48), "JPEG")
TRUNCATED = encode_image(photo(640, 480, seed=3), "JPEG")[:6000]
NOT_AN_IMAGE = b"\xff\xd8\xff\xe0" + b"garbage" * 2000
MAX_BODY_BYTES = 512 * 1024


@dataclass(frozen=True)
class Case:
    status: int
    path: str
    body: bytes
    content_type: str | None


def _form(path: str, files: Any, data: Any) -> tuple[bytes, str]:
    built = httpx.Request("POST", f"http://test{path}", files=files, data=data)
    return built.read(), built.headers["content-type"]


def _classify(status: int, image: bytes, text: str = "a red bird", **fields: str) -> Case:
    files = {"image": ("i.jpg", image, "image/jpeg")}
    return Case(status, "/classify", *_form("/classify", files, {"text": text} | fields))


def _batch(status: int, images: list[bytes]) -> Case:
    files = [("images", ("i.jpg", image, "image/jpeg")) for image in images]
    body, content_type = _form(
        "/classify/batch",
        files,
        {"texts": ["a red bird"] * len(images)},  # type: ignore[arg-type]
    )
    return Case(status, "/classify/batch", body, content_type)


def _infer(status: int, image: bytes) -> Case:
    inputs = [
        {
            "name": "image",
            "datatype": "BYTES",
            "shape": [1],
            "data": [base64.b64encode(image).decode()],
        },
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a red bird"]},
    ]
    body = json.dumps({"inputs": inputs}).encode()
    return Case(status, "/v2/models/tiny-test-bundle/infer", body, "application/json")


CASES = {
    "answered": _classify(200, JPEG),
    "not-an-image": _classify(422, NOT_AN_IMAGE),
    "truncated-image": _classify(422, TRUNCATED),
    "empty-text": _classify(422, JPEG, text=""),
    "priority-out-of-range": _classify(422, JPEG, priority="99"),
    "unknown-model": _classify(404, JPEG, model="no-such-bundle"),
    "body-too-large": _classify(413, NOT_AN_IMAGE * 40),
    "not-multipart": Case(415, "/classify", b"a red bird", "text/plain"),
    "batch-with-a-bad-image": _batch(200, [JPEG, NOT_AN_IMAGE, TRUNCATED]),
    "oip-answered": _infer(200, JPEG),
    "oip-not-an-image": _infer(400, NOT_AN_IMAGE),
}


@contextlib.asynccontextmanager
async def ready_app(bundle: Path) -> AsyncIterator[FastAPI]:
    settings = make_settings(bundle, max_body_bytes=MAX_BODY_BYTES, body_memory_mb=8)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        for _ in range(500):
            if (await asgi_call(app, "GET", "/readyz")).status == 200:
                break
            await asyncio.sleep(0.01)
        yield app


@pytest.mark.parametrize("name", list(CASES))
async def test_a_request_leaves_no_reference_cycle(tiny_bundle_dir: Path, name: str) -> None:
    case = CASES[name]
    async with ready_app(tiny_bundle_dir) as app:
        for _ in range(2):  # first calls may build what lives on (caches, lazy imports)
            answer = await asgi_call(app, "POST", case.path, case.body, case.content_type)
            assert answer.status == case.status, answer.body
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                answer = await asgi_call(app, "POST", case.path, case.body, case.content_type)
                assert answer.status == case.status, answer.body
            cyclic = gc.collect()
        finally:
            gc.enable()
    assert cyclic == 0, f"{name}: {cyclic} objects in reference cycles after 3 requests"
