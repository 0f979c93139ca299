"""Hostile and unusual inputs, generated in code (nothing is downloaded)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.support.images import encode_image, photo

RED = (220, 30, 30)
BLUE = (30, 30, 220)


def solid(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> Image.Image:
    return Image.new("RGB", size, color)


def animated(fmt: str, frames: list[Image.Image], **params: object) -> bytes:
    """An animated GIF, WebP or APNG ("PNG") of ``frames``; the first frame is shown first."""
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100, **params
    )
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels but whose data is tiny:
    the size comes from the header alone, so refusing it must not need the pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(idat))
        + png_chunk(b"IEND", b"")
    )


def blank_png(width: int, height: int) -> bytes:
    """A real, complete, all-black greyscale PNG: megapixels in a few kilobytes."""
    row = b"\x00" + bytes(width)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(row * height, 9))
        + png_chunk(b"IEND", b"")
    )


def corrupt_png_header() -> bytes:
    """A PNG signature followed by an IHDR chunk whose checksum is wrong."""
    good = encode_image(photo(40, 30), "PNG")
    return good[:29] + bytes(4) + good[33:]


def grey16(width: int = 40, height: int = 30) -> tuple[np.ndarray, bytes]:
    """A 16-bit greyscale PNG (mode I;16) and its 8-bit pixels (v = v8 * 257 exactly)."""
    grey8 = np.asarray(photo(width, height).convert("L"))
    wide = grey8.astype(np.uint16) * 257
    return grey8, encode_image(Image.fromarray(wide), "PNG")


def palette_with_transparency() -> bytes:
    image = photo(48, 40).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode_image(image, "PNG", transparency=0)


def grey_alpha() -> bytes:
    image = photo(48, 40).convert("L")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return encode_image(image, "PNG")


def rgba() -> bytes:
    image = photo(48, 40).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return encode_image(image, "PNG")


def cmyk_jpeg() -> bytes:
    return encode_image(photo(48, 40).convert("CMYK"), "JPEG", quality=95)


def huge_exif_jpeg() -> bytes:
    """A JPEG whose EXIF fills the APP1 segment (~60 KB of maker notes)."""
    exif = Image.Exif()
    exif[0x0112] = 1  # orientation: normal
    exif[0x927C] = b"\x00" * 60_000  # MakerNote
    return encode_image(photo(48, 40), "JPEG", exif=exif.tobytes())


def eps() -> bytes:
    return encode_image(photo(16, 16), "EPS")


def pdf() -> bytes:
    return encode_image(photo(16, 16), "PDF")


def psd() -> bytes:
    """The header of a 16x16 RGB Photoshop file (Pillow reads PSD but cannot write it)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 16, 16, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers: empty
    return header + sections + struct.pack(">H", 0) + bytes(16 * 16 * 3)


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect/></svg>'
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"


def seed_images() -> dict[str, bytes]:
    """Small valid files of every allowed format, for fuzzing by mutation."""
    image = photo(40, 30)
    return {
        "PNG": encode_image(image, "PNG"),
        "JPEG": encode_image(image, "JPEG", quality=80),
        "GIF": encode_image(image.convert("P"), "GIF"),
        "WEBP": encode_image(image, "WEBP"),
        "TIFF": encode_image(image, "TIFF"),
        "TIFF_LZW": encode_image(image, "TIFF", compression="tiff_lzw"),
        "BMP": encode_image(image, "BMP"),
        "APNG": animated("PNG", [image, solid(BLUE, (40, 30))]),
        "ANIMATED_GIF": animated("GIF", [image, solid(BLUE, (40, 30))]),
        "ANIMATED_WEBP": animated("WEBP", [image, solid(BLUE, (40, 30))]),
        "CMYK_JPEG": encode_image(image.convert("CMYK"), "JPEG"),
        "EXIF_JPEG": encode_image(image, "JPEG", exif=_rotated_exif()),
        "GREY16_PNG": grey16(40, 30)[1],
        "PALETTE_ALPHA_PNG": palette_with_transparency(),
    }


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "maker"
    return exif.tobytes()
