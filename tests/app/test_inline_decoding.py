"""Where an image is decoded: small ones on the event loop, larger ones (by their header) and
unreadable ones in the pool; the answer is the same either way."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.preprocess.image import header_pixels
from tests.support.app_setup import answered, make_settings, wait_ready
from tests.support.images import encode_image, photo


def test_header_pixels_reads_the_header_only() -> None:
    assert header_pixels(encode_image(photo(40, 30), "JPEG")) == 1200
    assert header_pixels(encode_image(photo(300, 200), "PNG")) == 60_000
    assert header_pixels(b"not an image") is None
    assert header_pixels(encode_image(photo(40, 30), "PNG")[:20]) is None  # header cut short


@pytest.mark.parametrize("size", [(40, 30), (400, 300)], ids=["small", "large"])
def test_inline_and_pool_decoding_give_the_same_answer(
    tiny_bundle_dir: Path, size: tuple[int, int]
) -> None:
    image = encode_image(photo(*size, seed=3), "JPEG", quality=90)
    answers = []
    for inline_pixels in (0, 65_536):
        settings = make_settings(tiny_bundle_dir, inline_decode_max_pixels=inline_pixels)
        with TestClient(create_app(settings)) as client:
            wait_ready(client)
            files = {"image": ("a.jpg", image, "image/jpeg")}
            answers.append(answered(client.post("/classify", files=files, data={"text": "a"})))
    assert answers[0]["predictions"] == answers[1]["predictions"]


@pytest.mark.parametrize(
    ("size", "in_pool"), [((40, 30), False), ((400, 300), True)], ids=["small", "large"]
)
def test_only_images_over_the_threshold_go_to_the_pool(
    tiny_bundle_dir: Path, size: tuple[int, int], in_pool: bool
) -> None:
    settings = make_settings(tiny_bundle_dir, inline_decode_max_pixels=65_536)
    app = create_app(settings)
    seen: list[str] = []
    with TestClient(app) as client:
        wait_ready(client)
        decoder = app.state.core.registry.default.runner.engine.pipeline.decoder
        real_call = decoder.__class__.__call__

        def spy(self: object, *args: object, **kwargs: object) -> object:
            seen.append(threading.current_thread().name)
            return real_call(self, *args, **kwargs)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(decoder.__class__, "__call__", spy)
            files = {"image": ("a.jpg", encode_image(photo(*size), "JPEG"), "image/jpeg")}
            answered(client.post("/classify", files=files, data={"text": "a"}))
    assert len(seen) == 1
    assert seen[0].startswith("fusionserve-preprocess") is in_pool, seen
