"""Image processor and timm settings mapped onto the manifest's preprocessing: what maps, and
every setting that is refused (naming the field and its value) rather than approximated."""

from __future__ import annotations

from typing import Any

import pytest

from app.bundle.manifest import ImagePreprocess
from models.encoders.encoder_sources import SourceError
from models.encoders.hf_image_preprocess import (
    PIL_RESAMPLE,
    image_preprocess_from_hf,
    timm_preprocess,
)

# A CLIP-like processor's settings as hf_image_source passes them (defaults filled).
CLIP_LIKE: dict[str, Any] = {
    "image_processor_type": "CLIPImageProcessorPil",
    "do_convert_rgb": True,
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "default_to_square": False,
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_pad": None,
    "pad_size": None,
    "data_format": None,
    "return_tensors": None,
}
VIT_LIKE: dict[str, Any] = CLIP_LIKE | {
    "image_processor_type": "ViTImageProcessor",
    "size": {"height": 224, "width": 224},
    "resample": 2,
    "do_center_crop": None,
    "crop_size": None,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}
CONVNEXT_LIKE: dict[str, Any] = VIT_LIKE | {
    "image_processor_type": "ConvNextImageProcessorPil",
    "size": {"shortest_edge": 224},
    "crop_pct": 0.875,
    "resample": 3,
}
FLOOR: dict[str, Any] = {"crop_offset_rounding": "floor", "rescale_factor": 1 / 255}
HALF: dict[str, Any] = {"mean": (0.5,) * 3, "std": (0.5,) * 3}


def test_a_shortest_edge_resize_with_a_crop() -> None:
    assert image_preprocess_from_hf(CLIP_LIKE) == ImagePreprocess(
        resize_short_side=224,
        crop_size=224,
        interpolation="bicubic",
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
        **FLOOR,
    )


def test_an_exact_resize_without_a_crop_may_be_non_square() -> None:
    config = VIT_LIKE | {"size": {"height": 24, "width": 40}}
    assert image_preprocess_from_hf(config) == ImagePreprocess(
        resize="exact", resize_height=24, resize_width=40, **HALF, **FLOOR
    )


def test_an_exact_resize_then_a_crop() -> None:
    config = VIT_LIKE | {
        "size": {"height": 256, "width": 256},
        "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224},
    }
    spec = image_preprocess_from_hf(config)
    assert (spec.resize, spec.resize_height, spec.resize_width, spec.crop_size) == (
        "exact",
        256,
        256,
        224,
    )


def test_convnext_below_384_resizes_to_its_crop_pct_then_crops() -> None:
    spec = image_preprocess_from_hf(CONVNEXT_LIKE)
    assert spec == ImagePreprocess(
        crop_pct=0.875, crop_size=224, interpolation="bicubic", **HALF, **FLOOR
    )
    assert spec.short_side == int(224 / 0.875) == 256


def test_convnext_uses_the_short_side_itself_where_crop_pct_cannot_carry_it() -> None:
    spec = image_preprocess_from_hf(CONVNEXT_LIKE | {"crop_pct": 1.0})
    assert spec.short_side == 224
    assert spec.crop_size == 224


def test_convnext_from_384_warps_without_a_crop() -> None:
    spec = image_preprocess_from_hf(CONVNEXT_LIKE | {"size": {"shortest_edge": 384}})
    assert (spec.resize, spec.resize_height, spec.resize_width, spec.crop_size) == (
        "exact",
        384,
        384,
        None,
    )


def test_convnext_accepts_a_crop_equal_to_its_own() -> None:
    config = CONVNEXT_LIKE | {"do_center_crop": True, "crop_size": {"height": 224, "width": 224}}
    assert image_preprocess_from_hf(config) == image_preprocess_from_hf(CONVNEXT_LIKE)


@pytest.mark.parametrize(("value", "name"), sorted(PIL_RESAMPLE.items()))
def test_every_pil_filter_maps_to_its_name(value: int, name: str) -> None:
    assert image_preprocess_from_hf(VIT_LIKE | {"resample": value}).interpolation == name


def test_no_resample_is_the_pil_backends_bilinear() -> None:
    assert image_preprocess_from_hf(VIT_LIKE | {"resample": None}).interpolation == "bilinear"


def test_without_rescaling_the_factor_is_one() -> None:
    spec = image_preprocess_from_hf(VIT_LIKE | {"do_rescale": False, "image_mean": [127.5] * 3})
    assert spec.rescale_factor == 1.0
    assert spec.mean == (127.5,) * 3


def test_without_normalising_mean_is_zero_and_std_one() -> None:
    spec = image_preprocess_from_hf(VIT_LIKE | {"do_normalize": False, "image_mean": None})
    assert (spec.mean, spec.std) == ((0.0,) * 3, (1.0,) * 3)


def test_a_single_mean_and_std_apply_to_every_channel() -> None:
    spec = image_preprocess_from_hf(VIT_LIKE | {"image_mean": 0.25, "image_std": 0.75})
    assert (spec.mean, spec.std) == ((0.25,) * 3, (0.75,) * 3)


def test_settings_that_leave_the_pixels_alone_are_ignored() -> None:
    inert = {"do_convert_rgb": False, "do_reduce_labels": False, "input_data_format": "x"}
    assert image_preprocess_from_hf(VIT_LIKE | inert) == image_preprocess_from_hf(VIT_LIKE)


# (a change to a valid config, the refused field, its value)
REFUSALS: dict[str, tuple[dict[str, Any], dict[str, Any], str, object]] = {
    "no_resize": (VIT_LIKE, {"do_resize": False}, "do_resize", False),
    "shortest_and_longest_edge": (
        CLIP_LIKE,
        {"size": {"shortest_edge": 224, "longest_edge": 448}},
        "size",
        {"shortest_edge": 224, "longest_edge": 448},
    ),
    "max_height_width": (
        VIT_LIKE,
        {"size": {"max_height": 224, "max_width": 224}},
        "size",
        {"max_height": 224, "max_width": 224},
    ),
    "longest_edge_alone": (
        VIT_LIKE,
        {"size": {"longest_edge": 224}},
        "size",
        {"longest_edge": 224},
    ),
    "size_not_a_dict": (VIT_LIKE, {"size": 224}, "size", 224),
    "pad": (VIT_LIKE, {"do_pad": True}, "do_pad", True),
    "no_crop_after_shortest_edge": (CLIP_LIKE, {"do_center_crop": False}, "do_center_crop", False),
    "non_square_crop": (
        CLIP_LIKE,
        {"crop_size": {"height": 224, "width": 200}},
        "crop_size",
        {"height": 224, "width": 200},
    ),
    "crop_larger_than_short_side": (
        CLIP_LIKE,
        {"crop_size": {"height": 256, "width": 256}},
        "crop_size",
        {"height": 256, "width": 256},
    ),
    "crop_larger_than_exact_resize": (
        VIT_LIKE,
        {
            "size": {"height": 200, "width": 300},
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
        },
        "crop_size",
        {"height": 224, "width": 224},
    ),
    "rescale_factor_over_one": (VIT_LIKE, {"rescale_factor": 2.0}, "rescale_factor", 2.0),
    "unknown_resample": (VIT_LIKE, {"resample": 7}, "resample", 7),
    "resample_name": (VIT_LIKE, {"resample": "bicubic"}, "resample", "bicubic"),
    "zero_std": (VIT_LIKE, {"image_std": [0.5, 0.0, 0.5]}, "image_std", (0.5, 0.0, 0.5)),
    "two_channel_mean": (VIT_LIKE, {"image_mean": [0.5, 0.5]}, "image_mean", [0.5, 0.5]),
    "channels_last": (VIT_LIKE, {"data_format": "channels_last"}, "data_format", "channels_last"),
    "unknown_setting": (
        VIT_LIKE,
        {"do_flip_channel_order": True},
        "do_flip_channel_order",
        True,
    ),
    "unknown_processor": (
        VIT_LIKE,
        {"image_processor_type": "LlavaNextImageProcessorPil"},
        "image_processor_type",
        "LlavaNextImageProcessorPil",
    ),
    "crop_pct_outside_convnext": (VIT_LIKE, {"crop_pct": 0.9}, "crop_pct", 0.9),
    "convnext_exact_size": (
        CONVNEXT_LIKE,
        {"size": {"height": 224, "width": 224}},
        "size",
        {"height": 224, "width": 224},
    ),
    "convnext_second_crop": (
        CONVNEXT_LIKE,
        {"do_center_crop": True, "crop_size": {"height": 200, "width": 200}},
        "crop_size",
        {"height": 200, "width": 200},
    ),
    "convnext_crop_pct_over_one": (CONVNEXT_LIKE, {"crop_pct": 1.2}, "crop_pct", 1.2),
    "convnext_no_crop_pct": (CONVNEXT_LIKE, {"crop_pct": None}, "crop_pct", None),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused(case: str) -> None:
    base, change, field, value = REFUSALS[case]
    with pytest.raises(SourceError, match="cannot be expressed") as error:
        image_preprocess_from_hf(base | change)
    assert (error.value.field, error.value.value) == (field, value)


# timm: pretrained_cfg dicts as timm's model registry writes them.
def test_timm_center_resizes_the_short_side_and_rounds_the_crop_offset() -> None:
    cfg = {
        "input_size": (3, 224, 224),
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "crop_pct": 0.95,
        "crop_mode": "center",
    }
    assert timm_preprocess(cfg) == ImagePreprocess(
        resize_short_side=235,  # floor(224 / 0.95)
        crop_size=224,
        long_side_rounding="floor",
        crop_offset_rounding="round",
        interpolation="bicubic",
        rescale_factor=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )


def test_timm_squash_resizes_exactly_then_crops() -> None:
    cfg = {
        "input_size": [3, 384, 384],
        "interpolation": "bilinear",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "crop_pct": 0.9,
        "crop_mode": "squash",
    }
    assert timm_preprocess(cfg) == ImagePreprocess(
        resize="exact",
        resize_height=426,  # floor(384 / 0.9)
        resize_width=426,
        crop_size=384,
        crop_offset_rounding="round",
        interpolation="bilinear",
        rescale_factor=1 / 255,
        **HALF,
    )


def test_timm_defaults_are_resolve_data_configs() -> None:
    spec = timm_preprocess({})
    assert (spec.short_side, spec.crop_size, spec.interpolation) == (256, 224, "bicubic")
    assert (spec.mean, spec.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"crop_mode": "border"}, "crop_mode", "border"),
        ({"input_size": (3, 224, 256)}, "input_size", (3, 224, 256)),
        ({"input_size": (1, 224, 224)}, "input_size", (1, 224, 224)),
        ({"crop_pct": 1.2}, "crop_pct", 1.2),
        ({"interpolation": "random"}, "interpolation", "random"),
        ({"crop_border_pixels": 2}, "crop_border_pixels", 2),
    ],
)
def test_timm_refused(change: dict[str, Any], field: str, value: object) -> None:
    with pytest.raises(SourceError, match="cannot be expressed") as error:
        timm_preprocess({"input_size": (3, 224, 224), "crop_mode": "center"} | change)
    assert (error.value.field, error.value.value) == (field, value)
