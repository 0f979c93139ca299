"""Plain JPEGs read without Pillow: the header Pillow would read, the files left to Pillow, and
the decoder's answers (tensor, memory estimate, refusals) the same on either path."""

from __future__ import annotations

import io
from unittest.mock import patch

import numpy as np
import pytest
from PIL import Image, ImageCms

from app.bundle.manifest import ImagePreprocess
from app.errors import ImageTooLarge, InvalidImage
from app.preprocess import image as image_module
from app.preprocess.gpu_jpeg import GpuJpegDecoder, PillowJpegBackend
from app.preprocess.image import ImageDecoder
from app.preprocess.jpeg_header import read_plain_jpeg
from app.preprocess.jpeg_pixels import MAX_ARRAY_BYTES
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS
from tests.support.images import encode_image, encode_jpeg, photo

SPEC = EFFICIENTNET_LITE_PREPROCESS  # resize to a short side of 256, crop 224
# The tiny bundle's geometry: a large image's estimate is its loading (the coefficients), not
# the arrays after it.
SMALL_SPEC = SPEC.model_copy(update={"resize_short_side": 36, "crop_size": 32})
MAX_PIXELS = 50_000_000


CORPUS = {
    f"{w}x{h}-{mode}-{sub}-{'progressive' if progressive else 'baseline'}": encode_jpeg(
        (w, h), mode, sub, progressive
    )
    for (w, h) in [(1, 1), (64, 48), (63, 65), (300, 200), (500, 380)]
    for mode in ("RGB", "L")
    for sub in (0, 2)
    for progressive in (False, True)
    if not (mode == "L" and sub)
}


def _pillow_path() -> object:
    """Every file through Pillow, as before plain JPEGs were read without it."""
    return patch.object(image_module, "read_plain_jpeg", return_value=None)


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_header_is_the_one_pillow_reads(name: str) -> None:
    data = CORPUS[name]
    header = read_plain_jpeg(data)
    assert header is not None
    image = Image.open(io.BytesIO(data))
    assert header.size == image.size
    assert header.mode == image.mode
    assert list(header.components) == image.layer  # type: ignore[attr-defined]
    assert header.progressive == bool(image.info.get("progressive"))


def _with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """``data`` with one more segment right after SOI."""
    segment = bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    return data[:2] + segment + data[2:]


def _frame_at(data: bytes) -> int:
    return data.index(b"\xff\xc0")


def test_what_is_left_to_pillow() -> None:
    plain = encode_jpeg()
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    frame = _frame_at(plain)
    frame_length = int.from_bytes(plain[frame + 2 : frame + 4], "big")
    twelve_bit = plain[: frame + 4] + b"\x0c" + plain[frame + 5 :]
    two_frames = plain[: frame + 2 + frame_length] + plain[frame:]
    left = {
        "png": encode_image(photo(), "PNG"),
        "cmyk": encode_jpeg(mode="CMYK"),
        "exif": encode_image(photo(), "JPEG", exif=exif.tobytes()),
        "icc profile": encode_image(photo(), "JPEG", icc_profile=icc),
        "comment": encode_image(photo(), "JPEG", comment=b"shot on a phone"),
        "adobe segment": _with_segment(plain, 0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01"),
        "other app segment": _with_segment(plain, 0xED, b"Photoshop 3.0\x00"),
        "fill byte": plain[:2] + b"\xff" + plain[2:],
        "twelve bits": twelve_bit,
        "two frames": two_frames,
        "truncated header": plain[: frame + 6],
        "garbage after SOI": plain[:2] + b"garbage" + plain[2:],
        "not a JFIF APP0": plain[:6] + b"JFXX" + plain[10:],
    }
    assert read_plain_jpeg(plain) is not None
    for name, data in left.items():
        assert read_plain_jpeg(data) is None, name


@pytest.mark.parametrize("spec", [SPEC, SMALL_SPEC], ids=["224", "32"])
@pytest.mark.parametrize("name", list(CORPUS))
def test_the_decoder_answers_the_same_either_way(name: str, spec: ImagePreprocess) -> None:
    data = CORPUS[name]
    decoder = ImageDecoder(spec, max_pixels=MAX_PIXELS, jpeg_draft=False)
    opened = decoder.open(data)
    assert opened.image is None  # read without Pillow
    assert opened.format == "JPEG"
    estimate = decoder.peak_bytes(data)
    tensor = decoder.decode(opened)
    with _pillow_path():
        by_pillow = decoder.open(data)
        assert by_pillow.image is not None
        assert (by_pillow.size, by_pillow.pixels) == (opened.size, opened.pixels)
        assert decoder.peak_bytes(data) == estimate
        assert np.array_equal(decoder.decode(by_pillow), tensor)


def test_what_the_decoder_leaves_to_pillow() -> None:
    decoder = ImageDecoder(SPEC, max_pixels=MAX_PIXELS)
    side = int((MAX_ARRAY_BYTES / 3) ** 0.5) + 1  # its array one row over the limit
    for data in (
        encode_jpeg((side, side)),  # decoded by Pillow's loader
        encode_jpeg((1200, 900)),  # drafted: decoded at a reduced scale
    ):
        opened = decoder.open(data)
        assert opened.image is not None
        opened.close()
    undrafted = ImageDecoder(SPEC, max_pixels=MAX_PIXELS, jpeg_draft=False)
    opened = undrafted.open(encode_jpeg((500, 380)))
    assert opened.image is None  # no draft to take: read without Pillow
    gpu = ImageDecoder(SPEC, max_pixels=MAX_PIXELS, gpu=GpuJpegDecoder(SPEC, PillowJpegBackend()))
    opened = gpu.open(encode_jpeg())
    assert opened.image is not None  # the GPU decoder's path is Pillow's
    opened.close()


@pytest.mark.parametrize(
    ("data", "settings", "error", "message"),
    [
        (encode_jpeg((300, 200)), {"max_pixels": 50_000}, ImageTooLarge, "over 50000 pixels"),
        (encode_jpeg((3, 60)), {"min_side": 4}, InvalidImage, "each side must be >= 4"),
        (encode_jpeg((10, 300)), {"max_aspect_ratio": 20.0}, InvalidImage, "at most 20 times"),
    ],
)
def test_refusals_are_the_same(
    data: bytes, settings: dict[str, float], error: type[Exception], message: str
) -> None:
    decoder = ImageDecoder(SPEC, **{"max_pixels": MAX_PIXELS} | settings)  # type: ignore[arg-type]
    with pytest.raises(error, match=message) as read:
        decoder.open(data)
    with _pillow_path(), pytest.raises(error) as by_pillow:
        decoder.open(data)
    assert str(read.value) == str(by_pillow.value)


def test_damaged_scans_get_pillows_verdict() -> None:
    good = encode_jpeg((64, 48))
    decoder = ImageDecoder(SPEC, max_pixels=MAX_PIXELS)
    extraneous = good[:-2] + b"\x12\x34\x56" + good[-2:]  # a libjpeg warning Pillow ignores
    assert decoder.open(extraneous).image is None
    with _pillow_path():
        expected = decoder(extraneous)
    assert np.array_equal(decoder(extraneous), expected)
    truncated = good[: len(good) // 2]  # the header whole, the scan cut
    assert decoder.open(truncated).image is None
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decoder(truncated)
