"""Image decoding and preprocessing exactly as a bundle's manifest specifies.

Produces the same tensor as ``models.export.reference_preprocess.reference_image_tensor`` (tested),
with two
savings for large images: JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling
(``Image.draft``) while staying at least as large as the resize target, and other images are
converted and reduced band by band before the exact resize (``app.preprocess.downscale``), so
a decode holds about one full-size copy of the image. Both change the tensor of large images
slightly (tested against the reference within stated tolerances). Other than JPEGs with a
short side over twice the resize target, images whose short side is under six times it
(1536 pixels for the default bundle) are not reduced and give the reference's tensor exactly.
Small JPEGs decoded whole skip Pillow's loader for the same pixels from the same library at
less CPU (``app.preprocess.jpeg_pixels``), and a plain one (no metadata) skips Pillow
altogether: its header is read without it (``app.preprocess.jpeg_header``).

Hostile input is refused from the header, before any pixel is decoded: formats outside the
allow-list, more pixels than ``max_pixels``, a side under ``min_side``, an aspect ratio over
``max_aspect_ratio`` (resizing an 8x6,000,000 image to a short side of 256 would allocate
gigabytes) and pixel formats with no sound 8-bit conversion. Given a ``DecodeBudget``, the
decode's peak memory, estimated from the header (``app.preprocess.decode_estimate``), is
reserved from the process-wide decode memory budget before any pixel is decoded. Animated
images give their first frame. 16-bit greyscale is scaled to 8 bits; the reference (and
Pillow's ``convert``) clip it instead, which turns most such images white.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from app.bundle.manifest import ImagePreprocess
from app.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from app.preprocess.decode_budget import DecodeBudget
from app.preprocess.decode_estimate import decode_peak_bytes, plain_jpeg_peak_bytes
from app.preprocess.downscale import SIXTEEN_BIT_MODES, downscale, reduction_factor
from app.preprocess.geometry import crop_box, limiting_sides, resized_size
from app.preprocess.gpu_jpeg import GpuDecodeFailed, GpuJpegDecoder
from app.preprocess.jpeg_header import PlainJpeg, read_plain_jpeg
from app.preprocess.jpeg_pixels import decode_pixels, decode_whole, whole_array_bytes

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# Modes that convert to RGB/L correctly. 32-bit integer ("I") and float ("F") pixels have no
# known range, so they are refused rather than clipped.
_SUPPORTED_MODES = (
    frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"})
    | SIXTEEN_BIT_MODES
)
# EXIF orientation -> the transposition that shows the image upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
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


@dataclass(frozen=True)
class OpenedImage:
    """An image whose header was read and checked, no pixel decoded yet (``ImageDecoder.open``):
    how big it is decides where it is decoded. Opened by Pillow (``image``), or, a plain JPEG
    that is decoded whole, read without it (``jpeg``; ``app.preprocess.jpeg_header``)."""

    image: Image.Image | None
    data: bytes
    header_size: tuple[int, int]
    jpeg: PlainJpeg | None = None

    @property
    def pixels(self) -> int:
        """Width x height, from the header."""
        width, height = self.header_size
        return width * height

    @property
    def size(self) -> tuple[int, int]:
        """The size it will be decoded at: a drafted JPEG's reduced size."""
        return self.header_size if self.image is None else self.image.size

    @property
    def format(self) -> str:
        return "JPEG" if self.image is None else str(self.image.format)

    def close(self) -> None:
        if self.image is not None:
            self.image.close()


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
        gpu: GpuJpegDecoder | None = None,
    ) -> None:
        """``gpu``: decode JPEGs with it (``app.preprocess.gpu_jpeg``), falling back to this
        decoder per image."""
        self.spec = spec
        self.gpu = gpu
        self._gpu_fallbacks = 0  # JPEGs the GPU decoder handed back to the CPU
        self._fallback_lock = threading.Lock()  # decodes run in several threads
        self.max_pixels = max_pixels
        self.min_side = min_side
        self.max_aspect_ratio = max_aspect_ratio
        self.jpeg_draft = jpeg_draft
        self._mode = "L" if spec.color_mode == "L" else "RGB"
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)
        self._mean_chw = self._mean[:, None, None]  # broadcast over an NCHW image
        self._std_chw = self._std[:, None, None]

    def __call__(self, data: bytes, budget: DecodeBudget | None = None) -> np.ndarray:
        """The encoder input for ``data``: ``open``, then ``decode``."""
        opened = self.open(data)
        try:
            return self.decode(opened, budget)
        finally:
            opened.close()

    @property
    def gpu_fallbacks(self) -> int:
        """JPEGs the GPU decoder could not decode, decoded on the CPU instead."""
        return self._gpu_fallbacks

    def open(self, data: bytes) -> OpenedImage:
        """``data`` opened, its header read and checked (no pixel decoded); raises the
        request's error for an empty, unknown, hostile or damaged file."""
        if not data:
            raise InvalidImage("the image file is empty")
        jpeg = None if self.gpu is not None else read_plain_jpeg(data)
        if jpeg is not None and self._decodes_whole(jpeg):
            self._check_size(jpeg.size)
            return OpenedImage(None, data, jpeg.size, jpeg)
        image, header_size = self._open(data)
        return OpenedImage(image, data, header_size)

    def _decodes_whole(self, jpeg: PlainJpeg) -> bool:
        """Whether a plain JPEG is decoded whole without Pillow: small enough for
        ``app.preprocess.jpeg_pixels``, and not drafted."""
        return whole_array_bytes(jpeg.mode, jpeg.size) > 0 and self._draft_ratio(jpeg.size) is None

    def decode(self, opened: OpenedImage, budget: DecodeBudget | None = None) -> np.ndarray:
        """The encoder input for an opened image. With ``budget``, the decode's estimated
        peak memory is reserved before any pixel is decoded and released after
        (``DecodeBudget``); when the reservation raises (``RoomWanted``, ``TooLate``) the
        image stays open, to be decoded later. Once decoding starts the image is closed at
        its end, success or not: that frees the decoded pixels."""
        image = opened.image
        needed = 0
        if budget is not None:
            try:
                needed = self._peak_bytes(opened)
            except BaseException:
                opened.close()
                raise
            budget.reserve(needed, opened.format, opened.size)
        started = time.perf_counter()
        try:
            # With a GPU decoder every image is opened by Pillow (``open``).
            jpeg = image is not None and image.format == "JPEG" and image.mode in ("RGB", "L")
            if self.gpu is not None and jpeg:
                try:
                    return self.gpu.decode_jpeg(opened.data)
                except GpuDecodeFailed as exc:
                    with self._fallback_lock:
                        self._gpu_fallbacks += 1
                    logger.debug("GPU decoding failed, decoding on the CPU: %s", exc)
            return self._decode(opened)
        finally:
            opened.close()  # frees the decoded pixels (leaving a `with` block does not)
            if budget is not None:
                budget.release(needed, opened.format, time.perf_counter() - started)

    def peak_bytes(self, data: bytes) -> int:
        """The estimated peak memory of decoding ``data`` (from its header)."""
        opened = self.open(data)
        try:
            return self._peak_bytes(opened)
        finally:
            opened.close()

    def _peak_bytes(self, opened: OpenedImage) -> int:
        image = opened.image
        factor = reduction_factor(*limiting_sides(self.spec, opened.size))
        if opened.jpeg is not None:
            return plain_jpeg_peak_bytes(
                opened.jpeg, opened.data, mode=self._mode, factor=factor, spec=self.spec
            )
        assert image is not None
        try:
            return decode_peak_bytes(
                image,
                opened.data,
                header_size=opened.header_size,
                mode=self._mode,
                factor=factor,
                spec=self.spec,
            )
        except Exception:  # a damaged header field the estimate reads (TIFF tags...)
            raise _undecodable("the image header is corrupt") from None

    def _open(self, data: bytes) -> tuple[Image.Image, tuple[int, int]]:
        """The opened image, header checked and drafted, and its size before drafting."""
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
        header_size = image.size
        try:
            self._check_header(image)
            self._maybe_draft(image)
        except (ImageTooLarge, InvalidImage):
            image.close()
            raise
        except Exception:
            image.close()
            raise _undecodable("the image header is corrupt") from None
        return image, header_size

    def _check_header(self, image: Image.Image) -> None:
        self._check_size(image.size)
        if image.mode not in _SUPPORTED_MODES:
            raise InvalidImage(f"unsupported pixel format ({image.mode})")

    def _check_size(self, size: tuple[int, int]) -> None:
        width, height = size
        if width * height > self.max_pixels:
            raise ImageTooLarge(f"image is {width}x{height}, over {self.max_pixels} pixels")
        if min(width, height) < self.min_side:
            raise InvalidImage(f"image is {width}x{height}; each side must be >= {self.min_side}")
        if max(width, height) > self.max_aspect_ratio * min(width, height):
            raise InvalidImage(
                f"image is {width}x{height}; the longer side may be at most "
                f"{self.max_aspect_ratio:g} times the shorter"
            )

    def _maybe_draft(self, image: Image.Image) -> None:
        ratio = self._draft_ratio(image.size) if image.format == "JPEG" else None
        if ratio is not None:
            width, height = image.size
            # Pillow keeps the decoded size >= the requested size in both axes.
            image.draft(None, (math.ceil(width * ratio), math.ceil(height * ratio)))

    def _draft_ratio(self, size: tuple[int, int]) -> float | None:
        """The scale a JPEG of ``size`` is drafted to by libjpeg's DCT scaling (under 1/2),
        or None when it is decoded at full size."""
        if not self.jpeg_draft:
            return None
        source, target = limiting_sides(self.spec, size)
        ratio = target / source
        return ratio if ratio < 0.5 else None

    def _decode(self, opened: OpenedImage) -> np.ndarray:
        if opened.image is not None:
            return self._decode_opened(opened.image, opened.data, opened.header_size)
        assert opened.jpeg is not None
        decoded = decode_pixels(opened.data, opened.jpeg.mode, opened.header_size)
        if decoded is not None:
            return self._tensor(decoded, orientation=1)  # no EXIF in a plain JPEG
        # libjpeg reported something: Pillow decides, as for any other JPEG (its own loader:
        # libjpeg would only report it again).
        image, header_size = self._open(opened.data)
        try:
            return self._decode_opened(image, opened.data, header_size, whole=False)
        finally:
            image.close()

    def _decode_opened(
        self, image: Image.Image, data: bytes, header_size: tuple[int, int], whole: bool = True
    ) -> np.ndarray:
        try:
            # A small JPEG decoded whole skips Pillow's loader (app.preprocess.jpeg_pixels).
            decoded = decode_whole(image, data, header_size) if whole else None
            if decoded is None:
                image.load()
                decoded = image
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        except Exception:  # see _undecodable
            raise _undecodable("the image data is truncated or corrupt") from None
        return self._tensor(decoded, orientation)

    def _tensor(self, decoded: Image.Image, orientation: int) -> np.ndarray:
        """The encoder input from the decoded image, turned upright by ``orientation``."""
        try:
            factor = reduction_factor(*limiting_sides(self.spec, decoded.size))
            pixels = downscale(decoded, self._mode, factor)
            width, height = decoded.size
            if orientation in _ORIENTATION:
                pixels = pixels.transpose(_ORIENTATION[orientation])
                if orientation in _SWAPS_SIDES:
                    width, height = height, width
            prepared = self._resize_crop(pixels, (width / factor, height / factor))
        except Exception:  # see _undecodable
            raise _undecodable("the image data is truncated or corrupt") from None
        return self._to_array(prepared)

    def _resize_crop(self, image: Image.Image, extent: tuple[float, float]) -> Image.Image:
        """Resize the region (0, 0, *extent) of ``image`` (the whole image before reduction:
        a reduced image's last row and column may stand for fewer source pixels) as the spec
        says (``app.preprocess.geometry``), then crop the centre."""
        size = resized_size(self.spec, image.size if extent == image.size else extent)
        resample = RESAMPLE[self.spec.interpolation]
        image = image.resize(size, resample, box=(0.0, 0.0, *extent))
        box = crop_box(self.spec, size)
        return image if box == (0, 0, *size) else image.crop(box)

    def _to_array(self, image: Image.Image) -> np.ndarray:
        """The normalised float32 array, computed as float32 ``(pixel * rescale - mean) /
        std`` in the spec's layout; the arithmetic writes straight into the contiguous result
        (no float copy of the image, no transposed copy)."""
        pixels = np.asarray(image)  # uint8, HWC (HW for "L")
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.spec.color_mode == "BGR":
            pixels = pixels[:, :, ::-1]
        mean, std = self._mean, self._std
        if self.spec.layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
            mean, std = self._mean_chw, self._std_chw
        out = np.empty(pixels.shape, dtype=np.float32)
        if self.spec.rescale_factor != 1.0:
            np.multiply(pixels, np.float32(self.spec.rescale_factor), out=out, dtype=np.float32)
            np.subtract(out, mean, out=out)
        else:
            np.subtract(pixels, mean, out=out, dtype=np.float32)
        np.divide(out, std, out=out)
        return out


def _undecodable(message: str) -> InvalidImage:
    """The error for any exception Pillow raised on the file's data. Its plugins raise many
    kinds on damaged files: OSError when truncated, SyntaxError, ValueError, EOFError, and
    from damaged header fields struct.error, TypeError, IndexError, KeyError... (fuzzing
    finds new ones), so everything but our own errors counts as a bad file."""
    logger.debug("undecodable image", exc_info=True)
    return InvalidImage(message)


def _claims_allowed_format(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
