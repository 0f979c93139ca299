"""Small files that decode to near the pixel cap: the uploads that exhaust a replica's memory.

Each is a few hundred kilobytes to a few megabytes (well under ``max_image_bytes``) and
decodes to about ``0.98 * max_pixels`` pixels: a square of flat 100-pixel blocks in 16
colours (so every format compresses it well), with a banded alpha where the format has one.
Used by ``bench.memory.decode_memory`` and by the end-to-end memory test.

BMP is 8-bit palette with RLE8 compression (written here: Pillow reads RLE8 but does not
write it); an uncompressed BMP near the cap would be far over the file-size limit.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable

import numpy as np
from PIL import Image

BLOCK = 100  # pixels per flat block side


def near_cap_side(max_pixels: int) -> int:
    """The side of a square image with about 98% of ``max_pixels`` (a multiple of BLOCK)."""
    return max(BLOCK, int(math.sqrt(0.98 * max_pixels)) // BLOCK * BLOCK)


def _blocks(side: int) -> Image.Image:
    """RGBA: 16 colours in BLOCK-pixel squares, alpha in four vertical bands (opaque to
    clear): 64 distinct pixels, so that lossless WebP stores it as a palette."""
    cells = side // BLOCK
    rng = np.random.default_rng(13)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    rgb = palette[rng.integers(0, 16, (cells, cells))]
    bands = np.array([255, 170, 85, 0], dtype=np.uint8)[np.arange(cells) * 4 // cells]
    alpha = np.broadcast_to(bands[None, :], (cells, cells))
    small = np.dstack([rgb, alpha]).astype(np.uint8)
    return Image.fromarray(small, "RGBA").resize((side, side), Image.Resampling.NEAREST)


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_16bit(image: Image.Image) -> bytes:
    grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    return _save(Image.fromarray(grey), "PNG")  # mode I;16


def bmp_rle8(side: int) -> bytes:
    """An 8-bit palette BMP with RLE8 compression: runs of at most 255 pixels per row."""
    rows = bytearray()
    for y in range(side):
        x = 0
        while x < side:
            run = min(255, side - x, BLOCK - x % BLOCK)
            rows += bytes([run, (x // BLOCK * 7 + y // BLOCK * 3) % 16])
            x += run
        rows += b"\x00\x00"  # end of line
    rows += b"\x00\x01"  # end of bitmap
    palette = b"".join(
        bytes([i * 16 % 256, 255 - i * 16 % 256, i * 97 % 256, 0]) for i in range(256)
    )
    offset = 14 + 40 + len(palette)
    header = struct.pack("<2sIHHI", b"BM", offset + len(rows), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return header + info + palette + bytes(rows)


def _cases(image: Image.Image, side: int) -> dict[str, Callable[[], bytes]]:
    rgb = image.convert("RGB")
    return {
        "png-rgba": lambda: _save(image, "PNG"),
        "png-la": lambda: _save(image.convert("LA"), "PNG"),
        "png-16bit": lambda: _png_16bit(image),
        "tiff": lambda: _save(rgb, "TIFF", compression="tiff_deflate"),
        "gif": lambda: _save(rgb.quantize(16), "GIF"),
        "webp": lambda: _save(image, "WEBP", lossless=True, quality=0, method=0),
        "bmp": lambda: bmp_rle8(side),
        "jpeg": lambda: _save(rgb, "JPEG", quality=85),
        "jpeg-progressive": lambda: _save(rgb, "JPEG", quality=85, progressive=True),
    }


CASES = tuple(_cases(Image.new("RGBA", (1, 1)), 1))


def near_cap_images(max_pixels: int, names: tuple[str, ...] = CASES) -> dict[str, bytes]:
    """Encoded files (by case name) that each decode to about ``0.98 * max_pixels`` pixels."""
    side = near_cap_side(max_pixels)
    cases = _cases(_blocks(side), side)
    return {name: cases[name]() for name in names}
