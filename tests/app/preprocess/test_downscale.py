"""Band-by-band conversion and reduction equal the whole image converted, then reduced."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.preprocess import downscale as module
from app.preprocess.downscale import band_rows, convert_mode, downscale, reduction_factor
from tests.support.images import photo


def source(mode: str, size: tuple[int, int]) -> Image.Image:
    image = photo(*size, mode="RGBA" if mode in ("RGBA", "LA") else "RGB", seed=5)
    if mode in ("RGBA", "LA"):
        image.putalpha(Image.linear_gradient("L").resize(size))
        return image.convert(mode)
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257 + 100
        return Image.fromarray(grey)
    if mode == "P":
        palette = image.quantize(32)
        palette.info["transparency"] = 3
        return palette
    return image.convert(mode)


@pytest.fixture
def small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of ~3000 pixels, so that a 150x100 image takes several."""
    monkeypatch.setattr(module, "BAND_PIXELS", 3000)


@pytest.mark.usefixtures("small_bands")
@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "1", "L", "CMYK", "RGB"])
@pytest.mark.parametrize("factor", [1, 2, 3, 7])
def test_bands_equal_the_whole_image(mode: str, factor: int) -> None:
    image = source(mode, (151, 103))  # neither side a multiple of the factors
    assert band_rows(151, factor) < 103  # several bands
    whole = convert_mode(image, "RGB")
    expected = whole if factor == 1 else whole.reduce(factor)
    actual = downscale(image, "RGB", factor)
    assert actual.mode == "RGB"
    assert actual.size == expected.size
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))


@pytest.mark.usefixtures("small_bands")
def test_grey_target() -> None:
    image = source("RGBA", (120, 90))
    expected = convert_mode(image, "L").reduce(4)
    np.testing.assert_array_equal(np.asarray(downscale(image, "L", 4)), np.asarray(expected))


def test_nothing_to_do_returns_the_image_itself() -> None:
    image = source("RGB", (40, 30))
    assert downscale(image, "RGB", 1) is image


def test_reduction_factor_keeps_three_times_the_target() -> None:
    assert reduction_factor(1535, 256) == 1  # source under 6x the target: not reduced
    assert reduction_factor(1536, 256) == 2
    assert reduction_factor(7000, 256) == 9
    for side in (1536, 3000, 7000, 1000):
        factor = reduction_factor(side, 256)
        assert side / factor >= 3 * 256 or factor == 1


def test_band_rows_are_whole_multiples_of_the_factor() -> None:
    for width in (100, 999, 7000, 2**20, 5 * 2**20):
        for factor in (1, 2, 9):
            rows = band_rows(width, factor)
            assert rows % factor == 0
            assert rows >= factor
            assert rows * width <= max(module.BAND_PIXELS, factor * width)


def test_sixteen_bit_is_scaled_with_rounding() -> None:
    wide = np.array([[0, 128, 129, 257, 65535, 65407]], dtype=np.uint16)
    eight = np.asarray(convert_mode(Image.fromarray(wide), "L"))
    np.testing.assert_array_equal(eight, [[0, 0, 1, 1, 255, 255]])
