"""Where a manifest's resize and centre crop put an image: sizes and boxes, no pixels.

The one definition the CPU decoder, the GPU resize graph's inputs, the decode memory
estimate and the reference preprocessing share, so that they cannot drift apart.
"""

from __future__ import annotations

import math

from app.bundle.manifest import ImagePreprocess

Size = tuple[int, int]  # (width, height), as Pillow gives sizes
Box = tuple[int, int, int, int]  # (left, top, right, bottom)


def resized_size(spec: ImagePreprocess, size: tuple[float, float]) -> Size:
    """The (width, height) an image of ``size`` (upright; a reduced image's extent in
    source pixels may be fractional) is resized to."""
    if spec.resize == "exact":
        exact_height, exact_width = _exact(spec)
        return exact_width, exact_height
    width, height = size
    short, long = min(width, height), max(width, height)
    new_short = spec.short_side
    scaled = new_short * long / short
    new_long = math.floor(scaled) if spec.long_side_rounding == "floor" else round(scaled)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def crop_box(spec: ImagePreprocess, resized: Size) -> Box:
    """The centre crop of an image resized to ``resized``; the whole image when uncropped."""
    width, height = resized
    if spec.crop_size is None:
        return 0, 0, width, height
    crop = spec.crop_size
    left, top = _offset(spec, width - crop), _offset(spec, height - crop)
    return left, top, left + crop, top + crop


def target_side(spec: ImagePreprocess) -> int:
    """The resize's target side: the short side's, or an exact resize's larger side."""
    if spec.resize == "exact":
        return max(_exact(spec))
    return spec.short_side


def limiting_sides(spec: ImagePreprocess, size: Size) -> tuple[int, int]:
    """(source side, target side) of an image of ``size``: reducing it by up to
    ``source / target`` keeps each of its sides at least as large as the resized image's, in
    either orientation (its EXIF orientation may turn it)."""
    return min(size), target_side(spec)


def _exact(spec: ImagePreprocess) -> Size:
    if spec.resize_height is None or spec.resize_width is None:
        raise ValueError("an exact resize without its size")
    return spec.resize_height, spec.resize_width


def _offset(spec: ImagePreprocess, room: int) -> int:
    if spec.crop_offset_rounding == "floor":
        return room // 2
    return int(round(room / 2.0))
