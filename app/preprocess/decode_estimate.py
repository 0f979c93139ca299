"""The peak memory of one image decode, estimated from its header before any pixel is decoded.

The sum of the copies that ``ImageDecoder`` and Pillow really make for the image's format and
mode (measured per format and mode in tests/app/preprocess/test_decode_estimate.py, which
requires this to be at least 90% of the measured peak):

- the decoded image, at its drafted size for a JPEG: Pillow keeps 1 byte per pixel for
  "1", "L" and "P", 2 for 16-bit grey, 4 for every multi-band mode (RGB is stored as RGBX);
- what the format's decoder holds besides: progressive and multi-scan JPEGs buffer every DCT
  coefficient of the whole undrafted image (2 bytes each); an RLE-compressed BMP is decoded
  into a growing bytearray and copied to bytes before the pixels are filled in; a TIFF strip
  or tile is decoded into a buffer of its own; a small JPEG decoded whole is decoded into an
  array first (``app.preprocess.jpeg_pixels``), held while Pillow copies it; a WebP is
  decoded by libwebp's animation decoder into two canvases of its own, then copied to bytes,
  and those live as long as the image; metadata (text chunks, ICC profiles, EXIF) lives as
  long as the image;
- the conversion to the model's mode of one band of rows (``app.preprocess.downscale``),
  the reduced (or, unreduced, full-size converted) result, the resize's two passes, the
  EXIF transposition and the final float arrays.

The format's own buffers are freed when loading ends, before the conversion starts, so the
peak is the decoded image plus the larger of the two.
"""

from __future__ import annotations

import functools
import math

from PIL import Image
from PIL import TiffImagePlugin as tiff

from app.bundle.manifest import ImagePreprocess
from app.preprocess.downscale import ALPHA_MODES, SIXTEEN_BIT_MODES, band_rows
from app.preprocess.geometry import resized_size
from app.preprocess.jpeg_header import PlainJpeg
from app.preprocess.jpeg_pixels import array_bytes, whole_array_bytes

FIXED_BYTES = 4 * 2**20  # decoder states, Python objects, small buffers
SMALL_BYTES = 2**20
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
# Bytes per band pixel that convert_mode holds at once, beyond the band itself: 16-bit grey
# through NumPy (uint32 copies, then 8-bit) then RGB; alpha composited in RGBA (the RGBA
# copy, the white canvas, the composite) then RGB; any other mode converted once.
_SIXTEEN_BIT_WORK = 20
_ALPHA_WORK = 16
_OTHER_WORK = 4
_RLE_COMPRESSIONS = (1, 2)  # BMP RLE8, RLE4
_WEBP_COPIES = 3  # libwebp's two canvases and the frame's bytes, besides the image


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel in Pillow's storage for ``mode``."""
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode in SIXTEEN_BIT_MODES else 4


def decode_peak_bytes(
    image: Image.Image,
    data: bytes,
    *,
    header_size: tuple[int, int],
    mode: str,
    factor: int,
    spec: ImagePreprocess,
) -> int:
    """Peak bytes of decoding ``image`` (opened from ``data``, and drafted if it will be;
    ``header_size`` is its size before ``draft``) into the encoder input, converting to
    ``mode`` after reducing ``factor`` times."""
    width, height = image.size
    decoded = width * height * pixel_bytes(image.mode)
    held, loading = _format_bytes(image, data, header_size)
    held += sum(len(v) for v in image.info.values() if isinstance(v, str | bytes))
    working = _working_bytes(image.mode, (width, height), mode, factor, spec)
    return FIXED_BYTES + decoded + held + max(loading, working)


def plain_jpeg_peak_bytes(
    jpeg: PlainJpeg, data: bytes, *, mode: str, factor: int, spec: ImagePreprocess
) -> int:
    """``decode_peak_bytes`` of a plain JPEG read without Pillow
    (``app.preprocess.jpeg_header``), decoded whole into an array: no draft, no metadata
    held; the same sum (tested against Pillow's reading of the same files). The header
    alone decides it unless libjpeg's coefficient buffer depends on the scans (a large
    baseline file): that estimate is remembered for the header's geometry."""
    known = _plain_jpeg_header_estimate(jpeg, mode, factor, spec)
    if known is not None:
        return known
    coefficients = _coefficients(list(jpeg.components), jpeg.progressive, data, jpeg.size)
    return _plain_jpeg_sum(jpeg, coefficients, mode, factor, spec)


@functools.lru_cache(maxsize=256)
def _plain_jpeg_header_estimate(
    jpeg: PlainJpeg, mode: str, factor: int, spec: ImagePreprocess
) -> int | None:
    """``plain_jpeg_peak_bytes`` from the header alone, or None when the scans decide it."""
    coefficients = _coefficient_bytes(list(jpeg.components), jpeg.size)
    if _scans_decide(coefficients, jpeg.progressive):
        return None
    return _plain_jpeg_sum(jpeg, coefficients, mode, factor, spec)


def _plain_jpeg_sum(
    jpeg: PlainJpeg, coefficients: int, mode: str, factor: int, spec: ImagePreprocess
) -> int:
    decoded = jpeg.size[0] * jpeg.size[1] * pixel_bytes(jpeg.mode)
    loading = coefficients + whole_array_bytes(jpeg.mode, jpeg.size)
    working = _working_bytes(jpeg.mode, jpeg.size, mode, factor, spec)
    return FIXED_BYTES + decoded + max(loading, working)


def _format_bytes(image: Image.Image, data: bytes, header_size: tuple[int, int]) -> tuple[int, int]:
    """(bytes the format's decoder holds as long as the image lives, bytes it holds while
    loading only)."""
    width, height = image.size
    if image.format == "WEBP":
        return _WEBP_COPIES * width * height * 4 + len(data), 0
    if image.format == "JPEG":
        return 0, _jpeg_coefficients(image, data, header_size) + array_bytes(image, header_size)
    if image.format == "BMP" and image.info.get("compression") in _RLE_COMPRESSIONS:
        return 0, math.ceil(2.25 * width * height)  # bytearray (with headroom) + bytes
    if image.format == "TIFF" and getattr(image, "tag_v2", {}).get(tiff.COMPRESSION, 1) != 1:
        return 0, _tiff_buffers(image)  # uncompressed TIFFs are read without libtiff
    return 0, 0


def _working_bytes(
    source_mode: str, size: tuple[int, int], mode: str, factor: int, spec: ImagePreprocess
) -> int:
    """Conversion, reduction, resize, transposition and final arrays (after loading)."""
    width, height = size
    target = pixel_bytes(mode)
    reduced = math.ceil(width / factor) * math.ceil(height / factor) * target
    band = 0
    if source_mode != mode:
        rows = min(height, band_rows(width, factor))
        band = rows * width * (pixel_bytes(source_mode) + _conversion_work(source_mode))
        if factor == 1 and rows < height:
            reduced = width * height * target  # converted band by band into a full-size image
    resized_w, resized_h = resized_size(spec, size)
    short, long = min(resized_w, resized_h), max(resized_w, resized_h) + 1
    resized = short * max(math.ceil(max(size) / factor), long) * target * 2  # both passes
    out_h, out_w = spec.output_size
    final = out_h * out_w * 4 * 4 * 3  # crop, float32 copies (normalise, transpose)
    return band + 2 * reduced + resized + final  # 2x: a transposed copy


def _conversion_work(source_mode: str) -> int:
    if source_mode in SIXTEEN_BIT_MODES:
        return _SIXTEEN_BIT_WORK
    return _ALPHA_WORK if source_mode in ALPHA_MODES else _OTHER_WORK


def _jpeg_coefficients(image: Image.Image, data: bytes, size: tuple[int, int]) -> int:
    """libjpeg's whole-image coefficient buffer, when it keeps one: progressive files, and
    baseline files whose first scan lacks some components. Block rows and columns rounded up
    to whole MCUs, 64 coefficients of 2 bytes per block. Under ``SMALL_BYTES`` it is counted
    without looking at the scans (a small image's estimate is mostly fixed costs anyway)."""
    components: list[tuple[int, int, int, int]] = getattr(image, "layer", [])
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    return _coefficients(components, progressive, data, size)


def _coefficients(
    components: list[tuple[int, int, int, int]],
    progressive: bool,
    data: bytes,
    size: tuple[int, int],
) -> int:
    if not components:
        return 0
    coefficients = _coefficient_bytes(components, size)
    if _scans_decide(coefficients, progressive) and _first_scan_components(data) >= len(components):
        return 0
    return coefficients


def _scans_decide(coefficients: int, progressive: bool) -> bool:
    """Whether the scans decide if libjpeg keeps its coefficient buffer: a baseline file's
    buffer of ``SMALL_BYTES`` or more, kept only when its first scan lacks some components
    (a progressive file always keeps it; a smaller one is counted without looking)."""
    return coefficients >= SMALL_BYTES and not progressive


def _coefficient_bytes(components: list[tuple[int, int, int, int]], size: tuple[int, int]) -> int:
    width, height = size
    h_max = max(c[1] for c in components)
    v_max = max(c[2] for c in components)
    blocks = 0
    for _, h, v, _ in components:
        columns = math.ceil(math.ceil(width * h / h_max) / 8) + h
        rows = math.ceil(math.ceil(height * v / v_max) / 8) + v
        blocks += columns * rows
    return blocks * 64 * 2


def _first_scan_components(data: bytes) -> int:
    """The number of components in a JPEG's first scan (its first SOS segment); 0 if none
    is found (then the estimate assumes a coefficient buffer)."""
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return 0
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:
            return data[position + 4] if position + 4 < len(data) else 0
        position += 2 + length
    return 0


def _tiff_buffers(image: Image.Image) -> int:
    """The buffer a TIFF strip or tile is decoded into (as RGBA for the formats libtiff reads
    that way), plus the largest compressed strip or tile read at once."""
    tags = getattr(image, "tag_v2", {})
    width, height = image.size
    tile = (tags.get(tiff.TILEWIDTH), tags.get(tiff.TILELENGTH))
    if tile[0] and tile[1]:
        area = int(tile[0]) * int(tile[1])
        counts = tags.get(tiff.TILEBYTECOUNTS, ())
    else:
        area = width * min(height, int(tags.get(tiff.ROWSPERSTRIP, height)))
        counts = tags.get(tiff.STRIPBYTECOUNTS, ())
    bits = tags.get(tiff.BITSPERSAMPLE, (8,))
    sample_bytes = math.ceil(int(max(bits if isinstance(bits, tuple) else (bits,))) / 8)
    pixel = max(4, int(tags.get(tiff.SAMPLESPERPIXEL, 1)) * sample_bytes)
    counts = counts if isinstance(counts, tuple) else (counts,)
    return area * pixel + max((int(c) for c in counts), default=0)
