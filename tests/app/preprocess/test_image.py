"""The service's decoder must give the exact tensor of the reference preprocessing."""

from __future__ import annotations

import io
import threading
import time
from unittest.mock import patch

import numpy as np
import pytest
from PIL import Image, ImageFile

from app.bundle.manifest import ImagePreprocess
from app.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from app.memory.memory_budget import MemoryBudget, RoomWanted
from app.memory.memory_trim import MemoryTrimmer
from app.preprocess.decode_budget import DecodeBudget, TooLate
from app.preprocess.decode_pace import TIMED_BYTES, DecodePace
from app.preprocess.image import ImageDecoder
from models.export.reference_preprocess import EFFICIENTNET_LITE_PREPROCESS, reference_image_tensor
from tests.support.corpus import (
    blank_png,
    corrupt_png_header,
    grey_alpha,
    palette_with_transparency,
    png_header_only,
    rgba,
)
from tests.support.corpus import grey16 as corpus_grey16
from tests.support.images import encode_image, photo

SPEC = EFFICIENTNET_LITE_PREPROCESS


def decoder(spec: ImagePreprocess = SPEC, **kwargs: object) -> ImageDecoder:
    options: dict[str, object] = {"max_pixels": 50_000_000, "min_side": 1, "jpeg_draft": False}
    options.update(kwargs)
    return ImageDecoder(spec, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "mode", "fmt"),
    [
        ((640, 480), "RGB", "PNG"),
        ((480, 640), "RGB", "JPEG"),
        ((300, 300), "L", "PNG"),
        ((28, 28), "L", "PNG"),
        ((500, 260), "RGBA", "PNG"),
        ((320, 240), "RGB", "WEBP"),
        ((257, 1000), "P", "GIF"),
    ],
)
def test_matches_reference_exactly(size: tuple[int, int], mode: str, fmt: str) -> None:
    image = photo(*size, mode="RGBA" if mode == "RGBA" else "RGB")
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize(size)
        image.putalpha(alpha)
    else:
        image = image.convert(mode)
    data = encode_image(image, fmt)
    expected = reference_image_tensor(data, SPEC)
    actual = decoder()(data)
    assert actual.shape == (3, 224, 224)
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual, expected)


def test_exif_orientation_is_applied() -> None:
    image = photo(320, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = encode_image(image, "JPEG", exif=exif.tobytes(), quality=95)
    upright = encode_image(image.transpose(Image.Transpose.ROTATE_270), "PNG")
    wrong_way = encode_image(image.transpose(Image.Transpose.ROTATE_90), "PNG")
    actual = decoder()(data)
    np.testing.assert_array_equal(actual, reference_image_tensor(data, SPEC))
    # The rotated JPEG decodes to the upright image's tensor, up to JPEG loss.
    to_upright = np.abs(actual - reference_image_tensor(upright, SPEC)).mean()
    to_wrong_way = np.abs(actual - reference_image_tensor(wrong_way, SPEC)).mean()
    assert to_upright < to_wrong_way / 4


def test_jpeg_draft_stays_close_to_reference() -> None:
    data = encode_image(photo(1600, 1200), "JPEG", quality=90)
    exact = reference_image_tensor(data, SPEC)
    drafted = decoder(jpeg_draft=True)(data)
    assert drafted.shape == exact.shape
    assert not np.array_equal(drafted, exact)  # draft really changed the decode path
    assert np.abs(drafted - exact).mean() < 0.02  # in units of (x-127)/128


def test_small_jpeg_is_not_drafted() -> None:
    data = encode_image(photo(400, 300), "JPEG", quality=90)
    np.testing.assert_array_equal(
        decoder(jpeg_draft=True)(data), reference_image_tensor(data, SPEC)
    )


def test_other_layouts_and_modes() -> None:
    data = encode_image(photo(100, 80), "PNG")
    nchw = decoder()(data)
    nhwc_spec = SPEC.model_copy(update={"layout": "NHWC"})
    np.testing.assert_array_equal(decoder(nhwc_spec)(data), nchw.transpose(1, 2, 0))
    bgr_spec = SPEC.model_copy(update={"color_mode": "BGR"})
    np.testing.assert_array_equal(decoder(bgr_spec)(data), nchw[::-1])
    grey_spec = ImagePreprocess(
        color_mode="L", resize_short_side=64, crop_size=48, mean=(0.0,), std=(255.0,)
    )
    grey = decoder(grey_spec)(data)
    assert grey.shape == (1, 48, 48)
    assert grey.min() >= 0.0
    assert grey.max() <= 1.0


def test_empty_file() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decoder()(b"")


def test_not_an_image() -> None:
    with pytest.raises(UnsupportedImageFormat):
        decoder()(b"this is plain text, not a picture")


def test_format_outside_allow_list() -> None:
    data = encode_image(photo(64, 64), "PPM")
    with pytest.raises(UnsupportedImageFormat, match="allowed formats"):
        decoder()(data)


def test_truncated_image() -> None:
    data = encode_image(photo(256, 256), "PNG")
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decoder()(data[: len(data) // 2])


def test_too_many_pixels_rejected_before_decoding() -> None:
    data = encode_image(photo(200, 100), "PNG")
    with pytest.raises(ImageTooLarge, match="200x100"):
        decoder(max_pixels=19_999)(data)


def test_too_small() -> None:
    data = encode_image(photo(1, 1), "PNG")
    with pytest.raises(InvalidImage, match="1x1"):
        decoder(min_side=8)(data)


def test_corrupt_header_of_an_allowed_format_is_invalid_not_unsupported() -> None:
    with pytest.raises(InvalidImage, match="header is corrupt"):
        decoder()(corrupt_png_header())
    with pytest.raises(InvalidImage, match="header is corrupt"):
        decoder()(b"GIF89a but not really")


def test_bomb_is_refused_from_the_header_without_decoding() -> None:
    for data in (png_header_only(6000, 6000), blank_png(3000, 3000)):
        with (
            patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")),
            pytest.raises(ImageTooLarge, match="over 4000000 pixels"),
        ):
            decoder(max_pixels=4_000_000)(data)


def test_pillow_bomb_limit_is_mapped_to_our_error() -> None:
    # 100000^2 is over Pillow's own hard limit, which refuses it inside Image.open.
    with pytest.raises(ImageTooLarge):
        decoder()(png_header_only(100_000, 100_000))


def test_aspect_ratio_limit() -> None:
    assert decoder(max_aspect_ratio=4.0)(encode_image(photo(40, 10))).shape == (3, 224, 224)
    with pytest.raises(InvalidImage, match="40x9; the longer side may be at most 4 times"):
        decoder(max_aspect_ratio=4.0)(encode_image(photo(40, 9)))


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey8, grey16 = corpus_grey16()
    assert Image.open(io.BytesIO(grey16)).mode == "I;16"
    expected = decoder()(encode_image(Image.fromarray(grey8)))
    np.testing.assert_array_equal(decoder()(grey16), expected)


def test_integer_and_float_pixels_are_refused() -> None:
    values = np.arange(64 * 64).reshape(64, 64)
    for array in (values.astype(np.int32), values.astype(np.float32)):
        with pytest.raises(InvalidImage, match="unsupported pixel format"):
            decoder()(encode_image(Image.fromarray(array), "TIFF"))


def test_cmyk_is_converted_to_rgb() -> None:
    source = photo(120, 90)
    cmyk = encode_image(source.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(cmyk)).mode == "CMYK"
    rgb = decoder()(encode_image(source))
    assert np.abs(decoder()(cmyk) - rgb).mean() < 0.03  # JPEG loss only


@pytest.mark.parametrize("data", [palette_with_transparency(), grey_alpha(), rgba()])
def test_transparency_matches_reference(data: bytes) -> None:
    np.testing.assert_array_equal(decoder()(data), reference_image_tensor(data, SPEC))


def test_transparent_pixels_become_white() -> None:
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([255, 0, 0] * 256)  # every entry red; entry 0 transparent
    clear_red = [
        encode_image(Image.new("RGBA", (32, 32), (255, 0, 0, 0))),
        encode_image(Image.new("LA", (32, 32), (90, 0))),
        encode_image(palette, "PNG", transparency=0),
    ]
    white = (255 - np.asarray(SPEC.mean, dtype=np.float32)) / np.asarray(SPEC.std)
    for data in clear_red:
        np.testing.assert_allclose(decoder()(data)[:, 0, 0], white, rtol=1e-6)


# Large images are reduced band by band before the exact resize (app.preprocess.downscale).
# Against the reference (one resize from full size), a box reduction that leaves at least 3x
# the target before the bilinear resize differs by about 0.002 on average and at most 0.023
# (3 grey levels) in units of (x - 127) / 128, measured on noisy photos up to 7000x5000. The
# tolerance, like the JPEG draft's, bounds that with a margin: mean 0.005, max 0.04.
REDUCED_MEAN_TOLERANCE = 0.005
REDUCED_MAX_TOLERANCE = 0.04


def assert_close_to_reference(actual: np.ndarray, reference: np.ndarray) -> None:
    difference = np.abs(actual - reference)
    assert difference.mean() < REDUCED_MEAN_TOLERANCE
    assert difference.max() < REDUCED_MAX_TOLERANCE


@pytest.mark.parametrize(
    ("size", "mode"),
    [((2000, 1600), "RGB"), ((3100, 1800), "RGBA"), ((1700, 2600), "P"), ((1800, 1600), "L")],
)
def test_large_images_are_reduced_close_to_the_reference(size: tuple[int, int], mode: str) -> None:
    image = photo(*size, mode="RGBA" if mode == "RGBA" else "RGB", seed=3)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(size))
    elif mode == "P":
        image = image.quantize(64)
        image.info["transparency"] = 5
    else:
        image = image.convert(mode)
    data = encode_image(image, "PNG", compress_level=1)
    actual = decoder()(data)
    reference = reference_image_tensor(data, SPEC)
    assert not np.array_equal(actual, reference)  # the reduction really ran
    assert_close_to_reference(actual, reference)


def test_large_sixteen_bit_grey_is_scaled_then_reduced() -> None:
    grey8 = np.asarray(photo(1700, 1600, mode="L", seed=4))
    grey16 = encode_image(Image.fromarray(grey8.astype(np.uint16) * 257), "PNG")
    assert Image.open(io.BytesIO(grey16)).mode == "I;16"
    reference = reference_image_tensor(encode_image(Image.fromarray(grey8)), SPEC)
    assert_close_to_reference(decoder()(grey16), reference)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_large_rotated_photo_is_reduced_upright(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode_image(photo(2400, 1600, seed=6), "JPEG", exif=exif.tobytes(), quality=95)
    reference = reference_image_tensor(data, SPEC)  # exif_transpose, then one resize
    assert_close_to_reference(decoder(jpeg_draft=False)(data), reference)


def budget(capacity: int, deadline_s: float = 60.0) -> DecodeBudget:
    return DecodeBudget(MemoryBudget(capacity), DecodePace(), time.perf_counter() + deadline_s)


def test_an_image_over_the_whole_budget_is_refused_before_decoding() -> None:
    data = encode_image(photo(2000, 1500), "PNG")
    needed = decoder().peak_bytes(data)
    with (
        patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")),
        pytest.raises(ImageTooLarge, match="FUSIONSERVE_DECODE_MEMORY_MB") as refused,
    ):
        decoder()(data, budget(needed - 1))
    assert "2000x1500 PNG image needs about" in refused.value.message


def test_no_room_now_is_signalled_before_decoding() -> None:
    data = encode_image(photo(2000, 1500), "PNG")
    needed = decoder().peak_bytes(data)
    limits = budget(needed + 100)
    assert limits.memory.try_reserve(101)  # someone else holds a little
    with (
        patch.object(ImageFile.ImageFile, "load", side_effect=AssertionError("decoded")),
        pytest.raises(RoomWanted) as wanted,
    ):
        decoder()(data, limits)
    assert wanted.value.nbytes == needed
    assert limits.memory.used == 101
    limits.memory.release(101)
    assert decoder()(data, limits).shape == (3, 224, 224)  # room now


def test_a_decode_that_would_end_past_the_deadline_is_not_started() -> None:
    data = encode_image(photo(2000, 1500), "PNG")
    needed = decoder().peak_bytes(data)
    memory, pace = MemoryBudget(2 * needed), DecodePace()
    pace.learned("PNG", TIMED_BYTES, 10.0)  # PNG decodes have been slow
    assert pace.time_needed_s("PNG", needed) > 1.0
    with pytest.raises(TooLate):
        decoder()(data, DecodeBudget(memory, pace, time.perf_counter() + 1.0))
    assert memory.used == 0
    assert decoder()(data, DecodeBudget(memory, pace, time.perf_counter() + 600)).shape[0] == 3


def test_the_reservation_is_given_back_after_success_and_failure() -> None:
    limits = budget(2**30)
    assert decoder()(encode_image(photo(300, 200)), limits).shape == (3, 224, 224)
    assert limits.memory.used == 0
    truncated = encode_image(photo(256, 256), "PNG")
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decoder()(truncated[: len(truncated) // 2], limits)
    assert limits.memory.used == 0


def test_memory_is_handed_back_after_large_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    trimmed = threading.Semaphore(0)
    trimmer = MemoryTrimmer(trim=trimmed.release)
    limits = DecodeBudget(MemoryBudget(2**30, trimmer), DecodePace(), time.perf_counter() + 60)
    decoder()(encode_image(photo(640, 480)), limits)
    assert not trimmed.acquire(timeout=0.2)  # a small decode, and a burst of one: too little
    large = encode_image(photo(3000, 2000), "PNG", compress_level=1)
    assert decoder().peak_bytes(large) >= trimmer.threshold
    decoder()(large, limits)
    assert trimmed.acquire(timeout=5)


def test_progressive_jpeg_estimate_counts_the_coefficient_buffer() -> None:
    image = photo(3200, 2400, seed=2)
    baseline = encode_image(image, "JPEG", quality=80)
    progressive = encode_image(image, "JPEG", quality=80, progressive=True)
    drafted = decoder(jpeg_draft=True)
    extra = drafted.peak_bytes(progressive) - drafted.peak_bytes(baseline)
    # libjpeg buffers every coefficient of a progressive file, whatever the draft scale: Y at
    # full resolution, Cb and Cr at a quarter (4:2:0), 64 coefficients of 2 bytes per 64
    # pixels. The estimate's peak is the larger of that and the conversion's working memory
    # (under 6 MiB at 1/8 scale), which the baseline file's estimate counts instead.
    coefficients = 3200 * 2400 * 1.5 * 2
    assert coefficients - 6 * 2**20 < extra <= coefficients * 1.01
