"""Image decoding and preprocessing exactly as a bundle's manifest specifies.

Produces the same tensor as ``models.reference.reference_image_tensor`` (tested), with one
optional speed-up: large JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling
(``Image.draft``) while staying at least as large as the resize target.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.bundle.manifest import ImagePreprocess
from app.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "P")
# Pillow's own errors for corrupt or truncated data: OSError (truncated), SyntaxError (bad
# header fields), ValueError/EOFError/struct errors from individual plugins.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)


class ImageDecoder:
    """Decode one encoded image into the encoder's input array (no batch axis)."""

    def __init__(
        self,
        spec: ImagePreprocess,
        *,
        max_pixels: int,
        min_side: int = 1,
        jpeg_draft: bool = True,
    ) -> None:
        self.spec = spec
        self.max_pixels = max_pixels
        self.min_side = min_side
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
            # resize/crop always return new images, so closing the opened one is safe.
            prepared = self._resize_crop(self._convert(ImageOps.exif_transpose(image)))
        except _DECODE_ERRORS:
            raise InvalidImage("the image data is truncated or corrupt") from None
        finally:
            image.close()
        return self._to_array(prepared)

    def _open(self, data: bytes) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except UnidentifiedImageError:
            raise UnsupportedImageFormat(
                f"not a recognised image; allowed formats: {', '.join(ALLOWED_FORMATS)}"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLarge(f"image exceeds {self.max_pixels} pixels") from None
        except _DECODE_ERRORS:
            raise InvalidImage("the image header is corrupt") from None
        width, height = image.size
        if width * height > self.max_pixels:
            image.close()
            raise ImageTooLarge(f"image is {width}x{height}, over {self.max_pixels} pixels")
        if min(width, height) < self.min_side:
            image.close()
            raise InvalidImage(f"image is {width}x{height}; each side must be >= {self.min_side}")
        return image

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
