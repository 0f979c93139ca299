"""A checkpoint's own image preprocessing, written as a FusionServe manifest's ``ImagePreprocess``.

Two sources, each mapped exactly or refused (``inexpressible``: the field, its value and why),
never approximated:

- ``image_preprocess_from_hf``: a transformers image processor's settings, with the semantics
  of its PIL backend (``PilBackend``, ``<Model>ImageProcessorPil``): Pillow resizes on 8-bit
  pixels; ``size={"shortest_edge": s}`` floors the long side (``int(s * long / short)``);
  ``size={"height", "width"}`` is an exact resize; the centre crop's offset is floored
  (``(h - crop) // 2``); then ``rescale_factor``, then ``(x - mean) / std`` on that scale.
  ConvNeXt's processor (also ResNet's and RegNet's) has its own rule: below 384 the short side
  becomes ``int(s / crop_pct)`` and is cropped to ``s``, from 384 the image is warped to
  ``s`` x ``s``.
- ``timm_preprocess``: a timm model's ``pretrained_cfg`` (or resolved data config), following
  ``timm.data.transforms_factory.transforms_imagenet_eval``: ``center`` resizes the short side
  to ``floor(size / crop_pct)`` with torchvision's ``Resize`` (long side floored) and
  centre-crops with torchvision's ``CenterCrop`` (offset rounded); ``squash`` resizes to that
  square exactly, then crops; ``ToTensor`` rescales by 1/255.

No torch or transformers here: the functions read plain dicts (``hf_image_source`` fills a
processor's defaults by instantiating it and passes its attributes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

from app.bundle.manifest import ImagePreprocess, Interpolation
from models.encoders.encoder_sources import inexpressible

# Pillow's resampling filters by the integer a processor stores (PIL.Image.Resampling).
PIL_RESAMPLE: dict[int, Interpolation] = {
    0: "nearest",
    1: "lanczos",
    2: "bilinear",
    3: "bicubic",
    4: "box",
    5: "hamming",
}
# Processors whose pixel path is PilBackend's own: resize, centre crop, rescale, normalise.
GENERIC_PROCESSORS = frozenset(
    {
        "ViTImageProcessor",
        "DeiTImageProcessor",
        "BeitImageProcessor",
        "CLIPImageProcessor",
        "BitImageProcessor",
        "SiglipImageProcessor",
    }
)
# ConvNeXt's processor (ConvNeXt, ResNet, RegNet checkpoints): its own crop_pct resize.
CONVNEXT_PROCESSOR = "ConvNextImageProcessor"
CONVNEXT_WARP_FROM = 384  # from this shortest_edge on, ConvNeXt's processor warps, uncropped
# Settings that do not change the pixel values of an RGB image through the PIL backend: RGB
# conversion (the service converts too, compositing transparency on white as
# ``convert_to_rgb`` does), how ``size`` integers were read, input layout, output container,
# segmentation labels.
_INERT = frozenset(
    {
        "image_processor_type",
        "processor_class",
        "do_convert_rgb",
        "default_to_square",
        "input_data_format",
        "device",
        "return_tensors",
        "disable_grouping",
        "image_seq_length",
        "do_reduce_labels",
    }
)
_HANDLED = frozenset(
    {
        "do_resize",
        "size",
        "resample",
        "do_center_crop",
        "crop_size",
        "crop_pct",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "do_pad",
        "pad_size",
        "data_format",
    }
)
# transformers' floor conventions (image_transforms.get_resize_output_image_size, center_crop).
_HF_ROUNDING: dict[str, Any] = {"long_side_rounding": "floor", "crop_offset_rounding": "floor"}

# timm's defaults (timm.data.config.resolve_data_config, timm.data.constants).
TIMM_DEFAULT_CROP_PCT = 0.875
TIMM_DEFAULT_MEAN = (0.485, 0.456, 0.406)
TIMM_DEFAULT_STD = (0.229, 0.224, 0.225)
_TIMM_INTERPOLATIONS: dict[object, Interpolation] = {name: name for name in PIL_RESAMPLE.values()}


def image_preprocess_from_hf(config: Mapping[str, Any]) -> ImagePreprocess:
    """The manifest preprocessing that gives the same ``pixel_values`` as a transformers PIL
    image processor with ``config`` (its attributes, class defaults filled; ``size`` and
    ``crop_size`` as dicts). ``image_processor_type`` selects ConvNeXt's resize rule; raises
    ``SourceError`` for anything the manifest cannot express."""
    processor = _processor_type(config)
    _refuse_unknown(config)
    if not config.get("do_resize"):
        raise inexpressible(
            "do_resize",
            config.get("do_resize"),
            "without a resize the tensor's size follows each image's; the manifest needs one",
        )
    if config.get("do_pad"):
        raise inexpressible("do_pad", config["do_pad"], "the manifest has no padding step")
    data_format = config.get("data_format")
    if data_format not in (None, "channels_first"):
        raise inexpressible("data_format", data_format, "only channels_first is known here")
    convnext = processor == CONVNEXT_PROCESSOR
    geometry = _convnext_geometry(config) if convnext else _geometry(config)
    mean, std = _normalisation(config)
    return ImagePreprocess(
        **geometry,
        **_HF_ROUNDING,
        interpolation=_resample(config.get("resample")),
        rescale_factor=_rescale(config),
        mean=mean,
        std=std,
    )


def timm_preprocess(pretrained_cfg: Mapping[str, Any]) -> ImagePreprocess:
    """The manifest preprocessing of timm's evaluation transform for ``pretrained_cfg``
    (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``;
    missing ones take ``resolve_data_config``'s defaults). ``border`` crops, non-square
    inputs and crops larger than the resized image are refused."""
    size = _timm_size(pretrained_cfg.get("input_size") or (3, 224, 224))
    crop_pct = pretrained_cfg.get("crop_pct") or TIMM_DEFAULT_CROP_PCT
    if not _is_number(crop_pct) or crop_pct <= 0:
        raise inexpressible("crop_pct", crop_pct, "not a positive number")
    scale = math.floor(size / crop_pct)
    if scale < size:
        raise inexpressible(
            "crop_pct", crop_pct, f"the {size} crop is larger than the {scale} resize: timm pads"
        )
    crop_mode = pretrained_cfg.get("crop_mode") or "center"
    if pretrained_cfg.get("crop_border_pixels"):
        raise inexpressible(
            "crop_border_pixels",
            pretrained_cfg["crop_border_pixels"],
            "the manifest has no border trim before the resize",
        )
    geometry: dict[str, Any]
    if crop_mode == "center":
        geometry = {"resize": "short_side", "resize_short_side": scale}
    elif crop_mode == "squash":
        geometry = {"resize": "exact", "resize_height": scale, "resize_width": scale}
    else:
        raise inexpressible(
            "crop_mode",
            crop_mode,
            "only 'center' and 'squash' are expressible ('border' pads with the mean colour)",
        )
    name = pretrained_cfg.get("interpolation") or "bicubic"
    if name not in _TIMM_INTERPOLATIONS:
        raise inexpressible("interpolation", name, "not one of Pillow's filters")
    return ImagePreprocess(
        **geometry,
        crop_size=size,
        long_side_rounding="floor",  # torchvision's Resize(int)
        crop_offset_rounding="round",  # torchvision's CenterCrop
        interpolation=_TIMM_INTERPOLATIONS[name],
        rescale_factor=1 / 255,  # ToTensor
        mean=_channels("mean", pretrained_cfg.get("mean") or TIMM_DEFAULT_MEAN),
        std=_positive("std", _channels("std", pretrained_cfg.get("std") or TIMM_DEFAULT_STD)),
    )


def _processor_type(config: Mapping[str, Any]) -> str | None:
    name = config.get("image_processor_type")
    if name is None:
        return None
    base = str(name).removesuffix("Pil").removesuffix("Fast")
    if base not in GENERIC_PROCESSORS and base != CONVNEXT_PROCESSOR:
        known = ", ".join(sorted(GENERIC_PROCESSORS | {CONVNEXT_PROCESSOR}))
        raise inexpressible(
            "image_processor_type", name, f"its pixel path is not one known here ({known})"
        )
    return base


def _refuse_unknown(config: Mapping[str, Any]) -> None:
    for key, value in config.items():
        if key in _INERT or key in _HANDLED or key.startswith("_"):
            continue
        if value is None or value is False:
            continue
        raise inexpressible(key, value, "an image processor setting not known here")
    if config.get("crop_pct") is not None and _processor_type(config) != CONVNEXT_PROCESSOR:
        raise inexpressible(
            "crop_pct",
            config["crop_pct"],
            "only ConvNeXt's processor has a known crop_pct rule",
        )


def _size(config: Mapping[str, Any], key: str) -> dict[str, int]:
    value = config.get(key)
    if not isinstance(value, Mapping):
        raise inexpressible(key, value, "expected a dict of sides (the processor's own form)")
    return {name: side for name, side in value.items() if side is not None}


def _side(key: str, sides: dict[str, int], name: str) -> int:
    side = sides[name]
    if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
        raise inexpressible(key, sides, f"{name} is not a positive integer")
    return side


def _crop(config: Mapping[str, Any]) -> int | None:
    """The square crop's side, or None without a crop."""
    if not config.get("do_center_crop"):
        return None
    sides = _size(config, "crop_size")
    if set(sides) != {"height", "width"}:
        raise inexpressible("crop_size", sides, "a crop needs height and width")
    height, width = _side("crop_size", sides, "height"), _side("crop_size", sides, "width")
    if height != width:
        raise inexpressible("crop_size", sides, "the manifest's centre crop is square")
    return height


def _geometry(config: Mapping[str, Any]) -> dict[str, Any]:
    sides = _size(config, "size")
    crop = _crop(config)
    if set(sides) == {"height", "width"}:
        height, width = _side("size", sides, "height"), _side("size", sides, "width")
        if crop is not None and crop > min(height, width):
            raise inexpressible(
                "crop_size",
                config["crop_size"],
                f"larger than the {height}x{width} resize: the processor pads with zeros",
            )
        return {
            "resize": "exact",
            "resize_height": height,
            "resize_width": width,
            "crop_size": crop,
        }
    if set(sides) == {"shortest_edge"}:
        short = _side("size", sides, "shortest_edge")
        if crop is None:
            raise inexpressible(
                "do_center_crop",
                config.get("do_center_crop"),
                "after a shortest_edge resize the size follows each image's aspect ratio; "
                "the manifest needs a fixed-size tensor",
            )
        if crop > short:
            raise inexpressible(
                "crop_size",
                config["crop_size"],
                f"larger than the resized short side {short}: the processor pads with zeros",
            )
        return {"resize": "short_side", "resize_short_side": short, "crop_size": crop}
    raise inexpressible(
        "size",
        sides,
        "only {'height', 'width'} (exact) and {'shortest_edge'} resizes are expressible "
        "(not longest_edge limits, max_height/max_width, or pixel budgets)",
    )


def _convnext_geometry(config: Mapping[str, Any]) -> dict[str, Any]:
    sides = _size(config, "size")
    if set(sides) != {"shortest_edge"}:
        raise inexpressible("size", sides, "ConvNeXt's processor resizes by shortest_edge only")
    edge = _side("size", sides, "shortest_edge")
    crop = _crop(config)
    if edge >= CONVNEXT_WARP_FROM:
        if crop is not None and crop > edge:
            raise inexpressible(
                "crop_size", config["crop_size"], f"larger than the {edge}x{edge} resize"
            )
        return {"resize": "exact", "resize_height": edge, "resize_width": edge, "crop_size": crop}
    if crop is not None and crop != edge:
        raise inexpressible(
            "crop_size",
            config["crop_size"],
            f"a second centre crop after ConvNeXt's own crop to {edge}",
        )
    crop_pct = config.get("crop_pct")
    if not _is_number(crop_pct) or crop_pct <= 0:
        raise inexpressible("crop_pct", crop_pct, "not a positive number")
    short = int(edge / crop_pct)
    if short < edge:
        raise inexpressible(
            "crop_pct", crop_pct, f"the {edge} crop is larger than the {short} resize"
        )
    if crop_pct <= 1.0:
        by_pct = ImagePreprocess(crop_pct=crop_pct, crop_size=edge, mean=(0.0,) * 3, std=(1.0,) * 3)
        if by_pct.short_side == short:
            return {"resize": "short_side", "crop_pct": float(crop_pct), "crop_size": edge}
    return {"resize": "short_side", "resize_short_side": short, "crop_size": edge}


def _resample(value: object) -> Interpolation:
    if value is None:
        return "bilinear"  # PilBackend.resize's default
    if isinstance(value, bool) or not isinstance(value, int) or int(value) not in PIL_RESAMPLE:
        raise inexpressible("resample", value, "not one of Pillow's filters (0 to 5)")
    return PIL_RESAMPLE[int(value)]


def _rescale(config: Mapping[str, Any]) -> float:
    if not config.get("do_rescale"):
        return 1.0
    factor = config.get("rescale_factor")
    if not _is_number(factor):
        raise inexpressible("rescale_factor", factor, "not a number")
    if not 0 < factor <= 1:  # NaN fails too
        raise inexpressible("rescale_factor", factor, "the manifest's rescale factor is in (0, 1]")
    return float(factor)


def _normalisation(config: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not config.get("do_normalize"):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    mean = _channels("image_mean", config.get("image_mean"))
    std = _positive("image_std", _channels("image_std", config.get("image_std")))
    return mean, std


def _channels(field: str, value: object) -> tuple[float, ...]:
    """Three per-channel values (a single number applies to all three, as transformers does)."""
    if _is_number(value):
        return (float(value),) * 3
    if isinstance(value, list | tuple) and len(value) == 3 and all(map(_is_number, value)):
        return tuple(float(v) for v in value)
    raise inexpressible(field, value, "expected one number or three (RGB)")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(field: str, values: tuple[float, ...]) -> tuple[float, ...]:
    if not all(v > 0 for v in values):  # NaN fails too
        raise inexpressible(field, values, "standard deviations must be positive")
    return values


def _timm_size(input_size: object) -> int:
    if not isinstance(input_size, list | tuple) or len(input_size) != 3:
        raise inexpressible("input_size", input_size, "expected (channels, height, width)")
    channels, height, width = input_size
    if channels != 3:
        raise inexpressible("input_size", input_size, "the image encoder takes RGB (3 channels)")
    if height != width:
        raise inexpressible(
            "input_size",
            input_size,
            "a non-square input makes timm resize with ResizeKeepRatio (bilinear, sides "
            "rounded), not expressible",
        )
    if isinstance(height, bool) or not isinstance(height, int) or height <= 0:
        raise inexpressible("input_size", input_size, "sides must be positive integers")
    return height
