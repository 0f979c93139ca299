"""The header of a plain JPEG, read without Pillow.

Pillow reads a JPEG's header in Python, marker by marker (its quantisation tables value by
value): ~20 us for a small photo alone, ~40 in the request path, as much as decoding it
takes. A plain file needs none of what Pillow reads it for: this walks the markers before
the first scan and accepts only a JFIF APP0, the tables (DQT, DHT, DRI) and one 8-bit
baseline, extended or progressive frame (SOF0, SOF1, SOF2) of one or three components;
libjpeg (``simplejpeg.decode_jpeg_header``) must read the same size and a colour space that
Pillow opens as "L" or "RGB". Anything else (EXIF or XMP, ICC profiles, Adobe or other APP
segments, comments, fill bytes, CMYK, 12 bits, a damaged or truncated header) returns None and
goes through Pillow as before, which decides. Such a file carries no EXIF orientation and no
metadata Pillow would keep, so ``ImageDecoder`` decodes it whole (``app.preprocess.jpeg_pixels``)
with everything else as for the same file opened by Pillow: the same checks, the same memory
estimate, the same tensor (tests/app/preprocess/test_jpeg_header.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import simplejpeg

_SOI = b"\xff\xd8"
_SOS = 0xDA
_APP0 = 0xE0
_TABLES = frozenset({0xC4, 0xDB, 0xDD})  # DHT, DQT, DRI
_FRAMES = {0xC0: False, 0xC1: False, 0xC2: True}  # SOF marker -> progressive
# libjpeg's colour space of the file -> the mode Pillow opens it in (by its components).
_MODES = {("Gray", 1): "L", ("YCbCr", 3): "RGB", ("RGB", 3): "RGB"}
_JFIF_LENGTH = 16  # the APP0 segment of a JFIF header, its length field included


@dataclass(frozen=True)
class PlainJpeg:
    """What Pillow would have read from the header: size, mode, the frame's components as
    Pillow's ``layer`` (id, horizontal and vertical sampling, quantisation table) and whether
    the file is progressive."""

    size: tuple[int, int]
    mode: str
    components: tuple[tuple[int, int, int, int], ...]
    progressive: bool


def read_plain_jpeg(data: bytes) -> PlainJpeg | None:
    """``data``'s header if it is a plain JPEG (see the module), else None."""
    if not data.startswith(_SOI):
        return None
    frame = _frame_segment(data)
    if frame is None:
        return None
    marker, segment = frame
    if len(segment) < 6 or segment[0] != 8:  # 8-bit samples only
        return None
    height = int.from_bytes(segment[1:3], "big")
    width = int.from_bytes(segment[3:5], "big")
    count = segment[5]
    if not width or not height or len(segment) != 6 + 3 * count:
        return None
    try:
        header_height, header_width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:  # libjpeg could not read it: Pillow decides
        return None
    mode = _MODES.get((colorspace, count))
    if mode is None or (header_width, header_height) != (width, height):
        return None
    components = tuple(
        (segment[i], segment[i + 1] >> 4, segment[i + 1] & 15, segment[i + 2])
        for i in range(6, len(segment), 3)
    )
    return PlainJpeg((width, height), mode, components, _FRAMES[marker])


def _frame_segment(data: bytes) -> tuple[int, bytes] | None:
    """The one frame marker and its segment's payload, if every segment before the first scan
    is one this module accepts."""
    frame: tuple[int, bytes] | None = None
    position = len(_SOI)
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(data):
            return None
        if marker == _SOS:
            return frame
        if marker in _FRAMES:
            if frame is not None:
                return None
            frame = (marker, data[position + 4 : end])
        elif marker == _APP0:
            if length != _JFIF_LENGTH or not data.startswith(b"JFIF\x00", position + 4):
                return None
        elif marker not in _TABLES:
            return None
        position = end
    return None
