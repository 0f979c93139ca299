"""Small whole JPEGs decoded by simplejpeg: Pillow's pixels bit for bit, and Pillow's verdict
on anything libjpeg complains about."""

from __future__ import annotations

import io
from unittest.mock import patch

import numpy as np
import pytest
from PIL import Image

from app.errors import InvalidImage
from app.preprocess import image as image_module
from app.preprocess.decode_estimate import _format_bytes
from app.preprocess.image import ImageDecoder
from app.preprocess.jpeg_pixels import MAX_ARRAY_BYTES, array_bytes, decode_whole
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS
from tests.support.images import encode_image, encode_jpeg, photo

SPEC = EFFICIENTNET_LITE_PREPROCESS


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def pillow_pixels(data: bytes) -> np.ndarray:
    image = opened(data)
    image.load()
    return np.asarray(image)


def whole(data: bytes) -> Image.Image | None:
    image = opened(data)
    return decode_whole(image, data, image.size)


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (64, 64), (63, 65), (17, 301), (640, 427)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("progressive", [False, True])
def test_pixels_are_pillows_bit_for_bit(
    size: tuple[int, int], mode: str, subsampling: int, progressive: bool
) -> None:
    data = encode_jpeg(size, mode, subsampling, progressive)
    decoded = whole(data)
    assert decoded is not None
    assert decoded.mode == mode
    assert decoded.size == size
    assert np.array_equal(np.asarray(decoded), pillow_pixels(data))


def test_restart_markers_and_noise_decode_the_same() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    for data in (
        encode_image(photo(200, 150), "JPEG", quality=80, restart_marker_blocks=4),
        encode_image(Image.fromarray(noise), "JPEG", quality=90),
    ):
        decoded = whole(data)
        assert decoded is not None
        assert np.array_equal(np.asarray(decoded), pillow_pixels(data))


def test_what_the_path_leaves_to_pillow() -> None:
    png = encode_image(photo(64, 48), "PNG")
    cmyk = encode_image(photo(64, 48).convert("CMYK"), "JPEG")
    side = int((MAX_ARRAY_BYTES / 3) ** 0.5) + 1  # one pixel row over the limit in RGB
    large = encode_image(photo(side, side), "JPEG")
    drafted = opened(encode_image(photo(640, 480), "JPEG"))
    header_size = drafted.size
    drafted.draft(None, (160, 120))
    assert drafted.size != header_size
    for data in (png, cmyk, large):
        image = opened(data)
        assert array_bytes(image, image.size) == 0
        assert decode_whole(image, data, image.size) is None
    assert decode_whole(drafted, b"unused", header_size) is None
    grey = opened(encode_image(photo(640, 480).convert("L"), "JPEG"))
    assert array_bytes(grey, grey.size) == 640 * 480  # one byte a pixel: still under it


def test_libjpeg_warnings_leave_the_verdict_to_pillow() -> None:
    good = encode_image(photo(64, 48), "JPEG")
    extraneous = good[:-2] + b"\x12\x34\x56" + good[-2:]  # a warning Pillow ignores
    assert whole(extraneous) is None
    decoder = ImageDecoder(SPEC, max_pixels=50_000_000)
    with patch.object(image_module, "decode_whole", return_value=None):
        expected = decoder(extraneous)
    assert np.array_equal(decoder(extraneous), expected)
    truncated = good[: len(good) // 2]
    assert whole(truncated) is None
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decoder(truncated)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("size", [(64, 48), (300, 200)])
def test_the_decoder_gives_the_same_tensor_either_way(
    orientation: int, size: tuple[int, int]
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode_image(photo(*size), "JPEG", exif=exif.tobytes())
    decoder = ImageDecoder(SPEC, max_pixels=50_000_000)
    decoded: list[Image.Image | None] = []

    def spy(image: Image.Image, data: bytes, header_size: tuple[int, int]) -> Image.Image | None:
        decoded.append(decode_whole(image, data, header_size))
        return decoded[-1]

    with patch.object(image_module, "decode_whole", side_effect=spy):
        tensor = decoder(data)
    assert len(decoded) == 1
    assert decoded[0] is not None  # this path decoded it
    with patch.object(image_module, "decode_whole", return_value=None):
        assert np.array_equal(tensor, decoder(data))


def test_the_memory_estimate_counts_the_array() -> None:
    data = encode_image(photo(320, 240), "JPEG")
    image = opened(data)
    _, loading = _format_bytes(image, data, image.size)
    with patch("app.preprocess.decode_estimate.array_bytes", return_value=0):
        _, without = _format_bytes(image, data, image.size)
    assert loading - without == 320 * 240 * 3
