"""Where an image is decoded: its header is read once, on the event loop; small ones are then
decoded there, larger ones in the pool; the answer is the same either way, and a broken
header is refused before any hand-off."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.errors import InvalidImage, UnsupportedImageFormat
from app.main import create_app
from app.preprocess.image import ImageDecoder
from tests.support.app_setup import answered, make_settings, wait_ready
from tests.support.images import encode_image, photo


def test_open_reads_the_header_only(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir))
    with TestClient(app) as client:
        wait_ready(client)
        decoder: ImageDecoder = app.state.core.registry.default.runner.engine.pipeline.decoder
    for size, kind in (((40, 30), "JPEG"), ((300, 200), "PNG")):
        opened = decoder.open(encode_image(photo(*size), kind))
        assert opened.pixels == size[0] * size[1]
        if kind == "JPEG":
            assert opened.image is None  # a plain JPEG: its header read without Pillow
        else:
            assert opened.image is not None
            assert opened.image.tile  # its data still to decode: nothing decoded yet
        pixels = decoder.decode(opened)
        assert pixels.shape[-2:] == (decoder.spec.crop_size, decoder.spec.crop_size)
    with pytest.raises(UnsupportedImageFormat):
        decoder.open(b"not an image")
    with pytest.raises(InvalidImage):
        decoder.open(encode_image(photo(40, 30), "PNG")[:20])  # header cut short


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
    seen: dict[str, list[str]] = {"open": [], "decode": []}
    with TestClient(app) as client:
        wait_ready(client)
        with pytest.MonkeyPatch.context() as patch:
            for name, calls in seen.items():
                patch.setattr(ImageDecoder, name, _spy(getattr(ImageDecoder, name), calls))
            files = {"image": ("a.jpg", encode_image(photo(*size), "JPEG"), "image/jpeg")}
            answered(client.post("/classify", files=files, data={"text": "a"}))
            broken = {"image": ("b.png", encode_image(photo(*size), "PNG")[:30], "image/png")}
            refused = client.post("/classify", files=broken, data={"text": "a"})
    assert refused.status_code == 422
    assert len(seen["open"]) == 2  # the header is read once per request
    assert not any(name.startswith("fusionserve-preprocess") for name in seen["open"])
    assert len(seen["decode"]) == 1  # the broken one was refused before any hand-off
    assert seen["decode"][0].startswith("fusionserve-preprocess") is in_pool, seen


def _spy(method: Callable[..., object], calls: list[str]) -> Callable[..., object]:
    """``method``, noting the thread of each call in ``calls``."""

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(threading.current_thread().name)
        return method(*args, **kwargs)

    return spy
