"""Small JPEGs decoded whole by libjpeg-turbo through simplejpeg instead of Pillow's loader.

Pillow decodes JPEGs with libjpeg-turbo too, but around the library it reads the file in
Python and copies the pixels more than once, which for a small image costs more than the
decode itself: the overhead suite's 64x64 JPEG takes ~100 us through Pillow and ~45 through
simplejpeg (``bench.overhead.cpu_split``), a 640x427 photo ~2.2 ms against ~1.6. simplejpeg
calls the same library with Pillow's settings (the accurate integer DCT, fancy upsampling,
libjpeg's own choice of the file's colour space), so the pixels are the same bit for bit
(tests/app/preprocess/test_jpeg_pixels.py: sizes, chroma subsamplings, progressive files,
greyscale, restart markers), and it releases the GIL while it decodes.

Only baseline or progressive JPEGs that ``ImageDecoder`` decodes whole (no DCT-scaled
draft), in RGB or greyscale, with at most ``MAX_ARRAY_BYTES`` of pixels take this path; the
image's header was already read and checked by Pillow. Anything libjpeg reports, a warning
included, hands the image back to Pillow, which decides as before: a truncated file is
refused, and some damaged ones Pillow accepts still decode.
"""

from __future__ import annotations

import logging

import simplejpeg
from PIL import Image

logger = logging.getLogger(__name__)

# The decoded array is held beside Pillow's copy of it for a moment
# (app.preprocess.decode_estimate counts it); 1 MiB covers a 640x480 RGB photo.
MAX_ARRAY_BYTES = 2**20
# Pillow's mode of the opened JPEG -> (simplejpeg's colour space, bytes per pixel).
_COLORSPACES = {"RGB": ("RGB", 3), "L": ("GRAY", 1)}


def array_bytes(image: Image.Image, header_size: tuple[int, int]) -> int:
    """Bytes of the array ``decode_whole`` would decode ``image`` (opened by Pillow, its size
    before any draft ``header_size``) into; 0 when it would hand the image to Pillow."""
    if image.format != "JPEG" or image.size != header_size or image.mode not in _COLORSPACES:
        return 0
    return whole_array_bytes(image.mode, header_size)


def whole_array_bytes(mode: str, size: tuple[int, int]) -> int:
    """Bytes of the array a ``mode`` ("RGB" or "L") JPEG of ``size`` is decoded whole into;
    0 over ``MAX_ARRAY_BYTES`` (Pillow decodes it)."""
    width, height = size
    nbytes = width * height * _COLORSPACES[mode][1]
    return nbytes if nbytes <= MAX_ARRAY_BYTES else 0


def decode_whole(
    image: Image.Image, data: bytes, header_size: tuple[int, int]
) -> Image.Image | None:
    """``image``'s pixels decoded from ``data`` (the file it was opened from) as a Pillow
    image in its own mode, or None when this path does not apply or libjpeg reported
    anything (``image`` is left unloaded for Pillow to decode)."""
    if not array_bytes(image, header_size):
        return None
    return decode_pixels(data, image.mode, header_size)


def decode_pixels(data: bytes, mode: str, size: tuple[int, int]) -> Image.Image | None:
    """The JPEG ``data`` of ``size`` decoded in ``mode`` ("RGB" or "L"), or None if libjpeg
    reported anything or decoded another size."""
    colorspace, _ = _COLORSPACES[mode]
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace=colorspace, fastdct=False, fastupsample=False, strict=True
        )
    except Exception:  # ValueError from libjpeg's errors and warnings; Pillow decides
        logger.debug("simplejpeg did not decode the JPEG; Pillow decodes it", exc_info=True)
        return None
    width, height = size
    if pixels.shape[:2] != (height, width):  # another image than the header said
        return None
    # The array's memory as the image's (what Image.fromarray does, without its checks).
    return Image.frombuffer(mode, size, pixels, "raw", mode, 0, 1)
