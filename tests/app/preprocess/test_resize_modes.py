"""Schema version 2's resize modes: the service's decoder against the reference, exactly, and
within the reduction's tolerance for large images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.bundle.manifest import ImagePreprocess
from app.preprocess.image import ImageDecoder
from models.export.reference_preprocess import reference_image_tensor
from tests.support.images import encode_image, photo

# transformers' 0..1 scale: rescale by 1/255, then normalise.
HALF = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "rescale_factor": 1 / 255}
SPECS = {
    "vit_exact": ImagePreprocess(resize="exact", resize_height=32, resize_width=32, **HALF),
    "squash_non_square": ImagePreprocess(
        resize="exact", resize_height=24, resize_width=40, interpolation="bicubic", **HALF
    ),
    "deit_exact_then_crop": ImagePreprocess(
        resize="exact", resize_height=40, resize_width=40, crop_size=32, **HALF
    ),
    "clip_floor_offsets": ImagePreprocess(
        resize_short_side=32,
        crop_size=32,
        crop_offset_rounding="floor",
        interpolation="bicubic",
        mean=(122.77, 116.75, 104.09),
        std=(68.5, 66.63, 70.32),
    ),
    "timm_crop_pct_round": ImagePreprocess(
        crop_pct=0.875, crop_size=28, long_side_rounding="round", interpolation="bicubic", **HALF
    ),
    "box": ImagePreprocess(resize_short_side=36, crop_size=32, interpolation="box", **HALF),
    "hamming_nhwc": ImagePreprocess(
        resize_short_side=36, crop_size=32, interpolation="hamming", layout="NHWC", **HALF
    ),
}


def decoder(spec: ImagePreprocess, **kwargs: object) -> ImageDecoder:
    options: dict[str, object] = {"max_pixels": 50_000_000, "jpeg_draft": False}
    return ImageDecoder(spec, **(options | kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize(
    ("size", "mode", "fmt"),
    [
        ((167, 111), "RGB", "PNG"),
        ((61, 97), "RGBA", "PNG"),
        ((120, 80), "RGB", "JPEG"),
        ((50, 75), "P", "GIF"),
    ],
)
def test_every_mode_matches_the_reference_exactly(
    name: str, size: tuple[int, int], mode: str, fmt: str
) -> None:
    spec = SPECS[name]
    image = photo(*size, seed=len(name))
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(size))
    elif mode == "P":
        image = image.quantize(32)
    data = encode_image(image, fmt)
    expected = reference_image_tensor(data, spec)
    actual = decoder(spec)(data)
    height, width = spec.output_size
    assert actual.shape == ((3, height, width) if spec.layout == "NCHW" else (height, width, 3))
    np.testing.assert_array_equal(actual, expected)


def test_rescaling_is_the_same_tensor_as_mean_and_std_in_pixel_units() -> None:
    data = encode_image(photo(90, 70))
    scaled = SPECS["vit_exact"]
    pixel_units = scaled.model_copy(
        update={"rescale_factor": 1.0, "mean": (127.5,) * 3, "std": (127.5,) * 3}
    )
    np.testing.assert_allclose(decoder(scaled)(data), decoder(pixel_units)(data), atol=1e-6)


def test_an_exact_resize_squashes_instead_of_cropping() -> None:
    # Left half black, right half white: squashing keeps both halves, a centre crop of a
    # wide image would not change that but a short-side crop of a tall one would cut rows.
    pixels = np.zeros((40, 200, 3), dtype=np.uint8)
    pixels[:, 100:] = 255
    data = encode_image(Image.fromarray(pixels))
    tensor = decoder(SPECS["vit_exact"])(data)
    assert tensor.shape == (3, 32, 32)
    assert np.all(tensor[:, :, :15] == -1.0)
    assert np.all(tensor[:, :, 17:] == 1.0)


# As in test_image.py: a box reduction leaving at least 3x the target, then the resize.
REDUCED_MEAN_TOLERANCE = 0.005 * 2  # these specs' unit is 1/127.5, test_image.py's 1/128 x 2
REDUCED_MAX_TOLERANCE = 0.04 * 2


@pytest.mark.parametrize("name", ["squash_non_square", "deit_exact_then_crop"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_large_images_under_exact_resizes_are_reduced_close_to_the_reference(
    name: str, orientation: int
) -> None:
    spec = SPECS[name]
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode_image(photo(1400, 900, seed=5), "JPEG", quality=95, exif=exif.tobytes())
    reference = reference_image_tensor(data, spec)
    for actual in (decoder(spec)(data), decoder(spec, jpeg_draft=True)(data)):
        assert actual.shape == reference.shape
        assert not np.array_equal(actual, reference)  # reduced or drafted
        difference = np.abs(actual - reference)
        assert difference.mean() < REDUCED_MEAN_TOLERANCE
        assert difference.max() < REDUCED_MAX_TOLERANCE
