"""Synthetic images and their encodings."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_image(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth synthetic photo (gradients + noise) so resampling differences would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def encode_jpeg(
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
    subsampling: int = 2,
    progressive: bool = False,
    **params: object,
) -> bytes:
    """A ``photo`` as a quality-85 JPEG: ``subsampling`` 0, 1, 2 for 4:4:4, 4:2:2, 4:2:0;
    a progressive one with optimised tables."""
    return encode_image(
        photo(*size).convert(mode),
        "JPEG",
        quality=85,
        subsampling=subsampling,
        progressive=progressive,
        optimize=progressive,
        **params,
    )
