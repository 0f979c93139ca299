"""Sizes and crop boxes of every resize mode, with the conventions of the sources they copy."""

from __future__ import annotations

import pytest

from app.bundle.manifest import ImagePreprocess
from app.preprocess.geometry import crop_box, limiting_sides, resized_size, target_side

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def spec(**fields: object) -> ImagePreprocess:
    return ImagePreprocess.model_validate({"mean": MEAN, "std": STD} | fields)


def test_short_side_floors_the_long_side_and_rounds_the_offset_by_default() -> None:
    # torchvision's Resize(224) + CenterCrop(224), as version 1 bundles always did.
    clip_like = spec(resize_short_side=224, crop_size=224)
    assert resized_size(clip_like, (500, 334)) == (335, 224)  # 224 * 500 / 334 = 335.33
    assert crop_box(clip_like, (335, 224)) == (56, 0, 280, 224)  # round(55.5) = 56


def test_floor_offsets_shift_the_crop_by_one_pixel_where_the_room_is_odd() -> None:
    # transformers' image processors floor the crop offset: (335 - 224) // 2 = 55.
    floored = spec(resize_short_side=224, crop_size=224, crop_offset_rounding="floor")
    assert crop_box(floored, (335, 224)) == (55, 0, 279, 224)
    assert crop_box(floored, (336, 224)) == crop_box(
        spec(resize_short_side=224, crop_size=224), (336, 224)
    )


def test_round_long_side_as_timm_resize_keep_ratio() -> None:
    rounded = spec(resize_short_side=224, crop_size=224, long_side_rounding="round")
    assert resized_size(rounded, (300, 451)) == (224, 337)  # 336.74
    assert resized_size(spec(resize_short_side=224, crop_size=224), (300, 451)) == (224, 336)


def test_crop_pct_gives_the_short_side_as_timm_and_convnext_floor_it() -> None:
    assert spec(crop_pct=0.875, crop_size=224).short_side == 256
    assert spec(crop_pct=0.9, crop_size=224).short_side == 248  # 248.9
    assert spec(crop_pct=1.0, crop_size=224).short_side == 224
    assert resized_size(spec(crop_pct=0.9, crop_size=224), (640, 480)) == (330, 248)


def test_exact_resize_ignores_the_aspect_and_may_skip_the_crop() -> None:
    squash = spec(resize="exact", resize_height=224, resize_width=160)
    assert resized_size(squash, (1000, 50)) == (160, 224)
    assert crop_box(squash, (160, 224)) == (0, 0, 160, 224)
    assert squash.output_size == (224, 160)
    deit = spec(resize="exact", resize_height=256, resize_width=256, crop_size=224)
    assert crop_box(deit, (256, 256)) == (16, 16, 240, 240)
    assert deit.output_size == (224, 224)


def test_limiting_sides_keep_every_target_side_in_both_orientations() -> None:
    assert limiting_sides(spec(resize_short_side=256, crop_size=224), (3000, 2000)) == (2000, 256)
    squash = spec(resize="exact", resize_height=224, resize_width=320)
    assert target_side(squash) == 320
    assert limiting_sides(squash, (3000, 2000)) == (2000, 320)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"crop_size": 224}, "one of resize_short_side and crop_pct"),
        ({"resize_short_side": 256, "crop_pct": 0.875, "crop_size": 224}, "one of"),
        ({"resize_short_side": 256}, "needs crop_size"),
        ({"resize_short_side": 200, "crop_size": 224}, "must not exceed the resized short side"),
        ({"crop_pct": 1.5, "crop_size": 224}, "less than or equal to 1"),
        ({"resize": "exact", "resize_height": 224}, "needs resize_height and resize_width"),
        (
            {"resize": "exact", "resize_height": 224, "resize_width": 224, "resize_short_side": 9},
            "apply to resize 'short_side' only",
        ),
        (
            {"resize": "exact", "resize_height": 200, "resize_width": 300, "crop_size": 224},
            "must not exceed resize_height",
        ),
        ({"resize_short_side": 256, "crop_size": 224, "resize_width": 9}, "'exact' only"),
        ({"resize_short_side": 256, "crop_size": 224, "rescale_factor": 0}, "greater than 0"),
        ({"resize_short_side": 256, "crop_size": 224, "interpolation": "area"}, "interpolation"),
    ],
)
def test_inconsistent_resizes_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**fields)
