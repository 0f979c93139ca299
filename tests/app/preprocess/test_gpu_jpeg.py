"""GPU JPEG decoding (``app.preprocess.gpu_jpeg``) without a GPU: Pillow stands in for
nvImageCodec (the same contract) and the resize graph runs on the CPU provider, so every part
but nvJPEG itself is checked here: the tensor against the CPU decoder's within the stated
tolerance on real photos, the per-image fallback, the limits that still apply, and the choice
``image_decoder`` makes. The nvImageCodec run is marked cuda."""

from __future__ import annotations

import io
import logging
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.bundle.manifest import ImagePreprocess
from app.errors import ImageTooLarge, InvalidImage, StartupError
from app.memory.memory_budget import MemoryBudget
from app.preprocess.decode_budget import DecodeBudget
from app.preprocess.decode_pace import DecodePace
from app.preprocess.gpu_decoder_choice import check_jpeg, gpu_decoder
from app.preprocess.gpu_jpeg import (
    TOLERANCE,
    GpuDecodeFailed,
    GpuJpegDecoder,
    NvImageCodecBackend,
    PillowJpegBackend,
)
from app.preprocess.image import ImageDecoder
from tests.support.app_setup import make_settings
from tests.support.corpus import cmyk_jpeg
from tests.support.images import encode_image, photo

SPEC = ImagePreprocess(
    color_mode="RGB",
    resize_short_side=256,
    crop_size=224,
    interpolation="bilinear",
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    layout="NCHW",
)
MAX_PIXELS = 40_000_000


def _photo(name: str, size: tuple[int, int]) -> bytes:
    """One of scikit-learn's two real photos (640x427) resized to ``size``, as a JPEG."""
    path = files("sklearn.datasets.images") / name
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        resized = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return encode_image(resized, "JPEG", quality=90)


PHOTOS = {
    "china 640x427": _photo("china.jpg", (640, 427)),
    "flower 427x640": _photo("flower.jpg", (427, 640)),
    "china 1600x1200": _photo("china.jpg", (1600, 1200)),
    "flower 1080x1080": _photo("flower.jpg", (1080, 1080)),
    "gradient 512x384": check_jpeg(512),
}


class CountingBackend(PillowJpegBackend):
    """Pillow's backend that counts its calls and can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def decode(self, data: bytes) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("nvjpeg: unsupported sampling")
        return super().decode(data)


def _decoders(
    spec: ImagePreprocess = SPEC, backend: CountingBackend | None = None
) -> tuple[ImageDecoder, ImageDecoder, CountingBackend]:
    backend = backend or CountingBackend()
    gpu = ImageDecoder(spec, max_pixels=MAX_PIXELS, gpu=GpuJpegDecoder(spec, backend))
    cpu = ImageDecoder(spec, max_pixels=MAX_PIXELS)  # the service's default: JPEG draft on
    return gpu, cpu, backend


def _within_tolerance(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    difference = np.abs(got - expected)
    mean, high = float(difference.mean()), float(np.quantile(difference, TOLERANCE.quantile))
    assert mean <= TOLERANCE.mean_abs, f"mean |difference| {mean:.4f}"
    assert high <= TOLERANCE.max_abs_quantile, f"99.9th percentile |difference| {high:.4f}"
    return mean, high


@pytest.mark.parametrize("name", list(PHOTOS))
def test_real_photos_give_the_cpu_decoders_tensor_within_tolerance(name: str) -> None:
    gpu, cpu, backend = _decoders()
    got = gpu(PHOTOS[name])
    assert backend.calls == 1
    _within_tolerance(got, cpu(PHOTOS[name]))
    whole = ImageDecoder(SPEC, max_pixels=MAX_PIXELS, jpeg_draft=False)(PHOTOS[name])
    _within_tolerance(got, whole)  # and against the full decode the reference makes


@pytest.mark.parametrize(
    ("interpolation", "color_mode", "layout"),
    [("bicubic", "RGB", "NCHW"), ("nearest", "RGB", "NCHW"), ("bilinear", "BGR", "NHWC")],
)
def test_other_interpolations_colour_orders_and_layouts_match(
    interpolation: str, color_mode: str, layout: str
) -> None:
    spec = SPEC.model_copy(
        update={
            "interpolation": interpolation,
            "color_mode": color_mode,
            "layout": layout,
            "mean": (120.0, 125.0, 130.0),
            "std": (60.0, 64.0, 70.0),
        }
    )
    gpu, _, _ = _decoders(spec)
    cpu = ImageDecoder(spec, max_pixels=MAX_PIXELS, jpeg_draft=False)
    for name in ("china 640x427", "flower 427x640"):
        got, expected = gpu(PHOTOS[name]), cpu(PHOTOS[name])
        if interpolation == "nearest":  # same sample positions: only the IDCT could differ
            np.testing.assert_array_equal(got, expected)
        else:
            _within_tolerance(got, expected)


def test_exif_orientation_is_applied_as_on_the_cpu() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show upright
    rotated = encode_image(photo(320, 200, seed=3), "JPEG", quality=95, exif=exif.tobytes())
    gpu, cpu, _ = _decoders()
    got = gpu(rotated)
    _within_tolerance(got, cpu(rotated))
    unrotated = cpu(encode_image(photo(320, 200, seed=3), "JPEG", quality=95))
    assert float(np.abs(got - unrotated).mean()) > 10 * TOLERANCE.mean_abs


def test_a_backend_error_falls_back_to_the_cpu_for_that_image() -> None:
    gpu, cpu, backend = _decoders(backend=CountingBackend(fail=True))
    jpeg = PHOTOS["china 640x427"]
    np.testing.assert_array_equal(gpu(jpeg), cpu(jpeg))
    assert (backend.calls, gpu.gpu_fallbacks) == (1, 1)


def test_other_formats_and_pixel_formats_never_reach_the_gpu() -> None:
    gpu, cpu, backend = _decoders()
    png = encode_image(photo(300, 200), "PNG")
    np.testing.assert_array_equal(gpu(png), cpu(png))
    np.testing.assert_array_equal(gpu(cmyk_jpeg()), cpu(cmyk_jpeg()))
    assert backend.calls == 0


def test_hostile_headers_are_refused_before_the_gpu_sees_them() -> None:
    spec = SPEC
    backend = CountingBackend()
    small = ImageDecoder(spec, max_pixels=100_000, gpu=GpuJpegDecoder(spec, backend))
    with pytest.raises(ImageTooLarge):
        small(PHOTOS["china 1600x1200"])
    narrow = encode_image(photo(2000, 40), "JPEG")
    with pytest.raises(InvalidImage, match="longer side"):
        small(narrow)
    assert backend.calls == 0


class RecordingMemory(MemoryBudget):
    """A memory budget that records each reservation."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.reservations: list[int] = []

    def try_reserve(self, nbytes: int) -> bool:
        self.reservations.append(nbytes)
        return super().try_reserve(nbytes)


def test_the_decode_memory_budget_applies_as_on_the_cpu() -> None:
    gpu, cpu, backend = _decoders()
    jpeg = PHOTOS["china 1600x1200"]
    memory = RecordingMemory(256 * 2**20)
    budget = DecodeBudget(memory, DecodePace(), time.perf_counter() + 30)
    gpu.decode(gpu.open(jpeg), budget)
    assert backend.calls == 1
    assert memory.reservations == [cpu.peak_bytes(jpeg)]
    assert memory.used == 0
    tight = DecodeBudget(MemoryBudget(2**20), DecodePace(), time.perf_counter() + 30)
    with pytest.raises(ImageTooLarge, match="decode memory budget"):
        gpu.decode(gpu.open(jpeg), tight)
    assert backend.calls == 1


def test_a_truncated_jpeg_the_backend_refuses_is_still_a_422() -> None:
    gpu, _, backend = _decoders()
    with pytest.raises(InvalidImage):
        gpu(PHOTOS["china 640x427"][:2000])
    assert backend.calls == 1


def test_geometry_matches_the_cpu_decoders_resize_and_crop() -> None:
    decoder = GpuJpegDecoder(SPEC, PillowJpegBackend())
    for width, height in ((640, 427), (427, 640), (300, 300), (1001, 257)):
        sizes, starts, ends = decoder.geometry(width, height)
        short = min(width, height)
        long_side = int(256 * max(width, height) / short)
        expected = (256, long_side) if height <= width else (long_side, 256)
        assert tuple(sizes) == expected
        assert tuple(ends - starts) == (224, 224)
        assert all(s >= 0 and e <= n for s, e, n in zip(starts, ends, sizes, strict=True))


def test_unsupported_preprocessing_has_no_gpu_decoder() -> None:
    with pytest.raises(ValueError, match="GPU decoding supports"):
        GpuJpegDecoder(SPEC.model_copy(update={"interpolation": "lanczos"}), PillowJpegBackend())


class GarbageBackend(PillowJpegBackend):
    """Decodes without error but returns the wrong pixels (a broken driver)."""

    def decode(self, data: bytes) -> np.ndarray:
        return np.zeros_like(super().decode(data))


def test_image_decoder_setting_chooses_and_checks_the_gpu_path(
    tiny_bundle_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def choose(mode: str, backend: Any = None, on_cuda: bool = False, spec: Any = SPEC) -> Any:
        settings = make_settings(tiny_bundle_dir, image_decoder=mode)
        return gpu_decoder(settings, spec, on_cuda, backend)

    assert choose("cpu", PillowJpegBackend()) is None
    assert isinstance(choose("auto", PillowJpegBackend()), GpuJpegDecoder)
    assert isinstance(choose("gpu", PillowJpegBackend()), GpuJpegDecoder)
    # No nvImageCodec here: auto says why and decodes on the CPU, gpu refuses to start.
    with caplog.at_level(logging.INFO):
        assert choose("auto", on_cuda=True) is None
    assert "nvImageCodec is not installed" in caplog.text
    with pytest.raises(StartupError, match="image_decoder=gpu but nvImageCodec"):
        choose("gpu")
    lanczos = SPEC.model_copy(update={"interpolation": "lanczos"})
    assert choose("auto", PillowJpegBackend(), spec=lanczos) is None
    with pytest.raises(StartupError, match="no GPU resize"):
        choose("gpu", PillowJpegBackend(), spec=lanczos)
    # A path that decodes but gives wrong pixels fails the start-up check.
    with caplog.at_level(logging.WARNING):
        assert choose("auto", GarbageBackend()) is None
    assert "failed its start-up check" in caplog.text
    with pytest.raises(StartupError, match="differ by"):
        choose("gpu", GarbageBackend())


def test_a_failure_inside_the_backend_is_reported_as_a_decode_failure() -> None:
    decoder = GpuJpegDecoder(SPEC, CountingBackend(fail=True))
    with pytest.raises(GpuDecodeFailed, match="RuntimeError: nvjpeg"):
        decoder.decode_jpeg(PHOTOS["china 640x427"])


@pytest.mark.cuda
def test_nvimagecodec_on_the_gpu_gives_the_cpu_tensor_within_tolerance() -> None:
    gpu = ImageDecoder(
        SPEC, max_pixels=MAX_PIXELS, gpu=GpuJpegDecoder(SPEC, NvImageCodecBackend(0), 0)
    )
    cpu = ImageDecoder(SPEC, max_pixels=MAX_PIXELS)
    for name, jpeg in PHOTOS.items():
        mean, high = _within_tolerance(gpu(jpeg), cpu(jpeg))
        print(f"{name}: mean |d| {mean:.4f}, p99.9 |d| {high:.4f}")
    assert gpu.gpu_fallbacks == 0
    np.testing.assert_array_equal(gpu(cmyk_jpeg()), cpu(cmyk_jpeg()))
