"""Image decoding and preprocessing exactly as a bundle's manifest specifies.

Produces the same tensor as ``models.reference.reference_image_tensor`` (tested), with one
optional speed-up: large JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling
(``Image.draft``) while staying at least as large as the resize target.

Hostile input is refused from the header, before any pixel is decoded: formats outside the
allow-list, more pixels than ``max_pixels``, a side under ``min_side``, an aspect ratio over
``max_aspect_ratio`` (resizing an 8x6,000,000 image to a short side of 256 would allocate
gigabytes) and pixel formats with no sound 8-bit conversion. Animated images give their
first frame. 16-bit greyscale is scaled to 8 bits; the reference (and Pillow's ``convert``)
clip it instead, which turns most such images white.
"""

from __future__ import annotations

import io
import logging
import math

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.bundle.manifest import ImagePreprocess
from app.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "P")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes that convert to RGB/L correctly. 32-bit integer ("I") and float ("F") pixels have no
# known range, so they are refused rather than clipped.
_SUPPORTED_MODES = (
    frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"})
    | _SIXTEEN_BIT_MODES
)
# How files of the allowed formats begin. A file that begins like one but that Pillow cannot
# open is a broken image (422), not one of an unsupported format (415).
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)


class ImageDecoder:
    """Decode one encoded image into the encoder's input array (no batch axis)."""

    def __init__(
        self,
        spec: ImagePreprocess,
        *,
        max_pixels: int,
        min_side: int = 1,
        max_aspect_ratio: float = 20.0,
        jpeg_draft: bool = True,
    ) -> None:
        self.spec = spec
        self.max_pixels = max_pixels
        self.min_side = min_side
        self.max_aspect_ratio = max_aspect_ratio
        self.jpeg_draft = jpeg_draft
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)

    def __call__(self, data: bytes) -> np.ndarray:
        if not data:
            raise InvalidImage("the image file is empty")
        image = self._open(data)
        try:
            self._maybe_draft(image)
            image.load()
            # In place: without EXIF rotation a copy of the whole decoded image is skipped
            # (~0.5 ms for a 12-megapixel photo). resize/crop always return new images, so
            # closing the opened one is safe.
            ImageOps.exif_transpose(image, in_place=True)
            prepared = self._resize_crop(self._convert(image))
        except Exception:  # see _undecodable
            raise _undecodable("the image data is truncated or corrupt") from None
        finally:
            image.close()
        return self._to_array(prepared)

    def _open(self, data: bytes) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except UnidentifiedImageError:
            if _claims_allowed_format(data):
                raise InvalidImage("the image header is corrupt") from None
            raise UnsupportedImageFormat(
                f"not a recognised image; allowed formats: {', '.join(ALLOWED_FORMATS)}"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLarge(f"image exceeds {self.max_pixels} pixels") from None
        except Exception:
            raise _undecodable("the image header is corrupt") from None
        try:
            self._check_header(image)
        except (ImageTooLarge, InvalidImage):
            image.close()
            raise
        return image

    def _check_header(self, image: Image.Image) -> None:
        width, height = image.size
        if width * height > self.max_pixels:
            raise ImageTooLarge(f"image is {width}x{height}, over {self.max_pixels} pixels")
        if min(width, height) < self.min_side:
            raise InvalidImage(f"image is {width}x{height}; each side must be >= {self.min_side}")
        if max(width, height) > self.max_aspect_ratio * min(width, height):
            raise InvalidImage(
                f"image is {width}x{height}; the longer side may be at most "
                f"{self.max_aspect_ratio:g} times the shorter"
            )
        if image.mode not in _SUPPORTED_MODES:
            raise InvalidImage(f"unsupported pixel format ({image.mode})")

    def _maybe_draft(self, image: Image.Image) -> None:
        if not self.jpeg_draft or image.format != "JPEG":
            return
        width, height = image.size
        ratio = self.spec.resize_short_side / min(width, height)
        if ratio < 0.5:
            # Pillow keeps the decoded size >= the requested size in both axes.
            image.draft(None, (math.ceil(width * ratio), math.ceil(height * ratio)))

    def _convert(self, image: Image.Image) -> Image.Image:
        target = "L" if self.spec.color_mode == "L" else "RGB"
        if image.mode in _SIXTEEN_BIT_MODES:
            image = _to_eight_bit(image)
        if image.mode == target:
            return image
        if image.mode in _ALPHA_MODES:
            # Transparent product shots are composited on white, as photographed products are.
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return image.convert(target)

    def _resize_crop(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        new_short = self.spec.resize_short_side
        new_long = int(new_short * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        image = image.resize(size, _RESAMPLE[self.spec.interpolation])
        crop = self.spec.crop_size
        left = int(round((size[0] - crop) / 2.0))
        top = int(round((size[1] - crop) / 2.0))
        return image.crop((left, top, left + crop, top + crop))

    def _to_array(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.spec.color_mode == "BGR":
            pixels = pixels[:, :, ::-1]
        pixels = (pixels - self._mean) / self._std
        if self.spec.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels, dtype=np.float32)


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale to 8-bit "L", scaled (65535 -> 255) with rounding."""
    wide = np.asarray(image).astype(np.uint32)
    return Image.fromarray(((wide + 128) // 257).astype(np.uint8))  # 2-D uint8: mode "L"


def _undecodable(message: str) -> InvalidImage:
    """The error for any exception Pillow raised on the file's data. Its plugins raise many
    kinds on damaged files: OSError when truncated, SyntaxError, ValueError, EOFError, and
    from damaged header fields struct.error, TypeError, IndexError, KeyError... (fuzzing
    finds new ones), so everything but our own errors counts as a bad file."""
    logger.debug("undecodable image", exc_info=True)
    return InvalidImage(message)


def _claims_allowed_format(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
