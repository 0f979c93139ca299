"""From a decoded image to the model's colour mode at a reduced size, one band at a time.

The decoded image is the one full-size copy a decode keeps. Converting it to the model's mode
(alpha composited on white, 16-bit scaled to 8 bits, palettes expanded) and reducing it by an
integer factor before the exact resize both happen one band of rows at a time, so that the
memory on top of the decoded image is one band's conversions plus the reduced result,
whatever the image's size. Band by band is exactly the whole image converted, then reduced:
conversions work pixel by pixel, and band heights are multiples of the factor, so no
reduction box spans two bands.

The factor keeps the reduced image at least ``REDUCING_GAP`` times the resize target (Pillow's
``reducing_gap``; 3 is "indistinguishable from fair resampling in almost all cases"), so the
bilinear/bicubic resize that follows still anti-aliases. Images whose short side is under
``REDUCING_GAP`` times the target are not reduced at all, and ones of up to ``BAND_PIXELS``
pixels are converted whole: for them the result is the one of converting and resizing
directly, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

REDUCING_GAP = 3.0
BAND_PIXELS = 1 << 20  # pixels converted at once (a 4 MB band of RGBA)

ALPHA_MODES = ("RGBA", "LA", "PA", "P")
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def reduction_factor(source_side: int, target_side: int) -> int:
    """The integer factor to reduce an image by before resizing ``source_side`` to
    ``target_side`` (``app.preprocess.geometry.limiting_sides``): 1 unless the source is at
    least ``2 * REDUCING_GAP`` times the target."""
    return max(1, int(source_side / (target_side * REDUCING_GAP)))


def band_rows(width: int, factor: int) -> int:
    """Rows converted at once: about ``BAND_PIXELS`` pixels, a multiple of ``factor``."""
    return max(factor, BAND_PIXELS // width // factor * factor)


def downscale(image: Image.Image, mode: str, factor: int) -> Image.Image:
    """``image`` in ``mode`` ("RGB" or "L"), reduced ``factor`` times (a box average, sizes
    rounded up). Returns ``image`` itself when there is nothing to do."""
    width, height = image.size
    if image.mode == mode:
        return image if factor == 1 else image.reduce(factor)
    rows = band_rows(width, factor)
    if rows >= height:
        converted = convert_mode(image, mode)
        return converted if factor == 1 else converted.reduce(factor)
    result = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    for top in range(0, height, rows):
        band = convert_mode(image.crop((0, top, width, min(top + rows, height))), mode)
        result.paste(band if factor == 1 else band.reduce(factor), (0, top // factor))
    return result


def convert_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode``: 16-bit grey scaled to 8 bits, transparency composited on white
    (as photographed products are), anything else converted by Pillow."""
    if image.mode in SIXTEEN_BIT_MODES:
        image = to_eight_bit(image)
    if image.mode == mode:
        return image
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert(mode)


def to_eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale to 8-bit "L", scaled (65535 -> 255) with rounding. Pillow's own
    ``convert`` (and the reference preprocessing) clip instead, which turns most such images
    white."""
    wide = np.asarray(image).astype(np.uint32)
    return Image.fromarray(((wide + 128) // 257).astype(np.uint8))  # 2-D uint8: mode "L"
