"""The raw inputs the parity check feeds both the served path and the source's own pipeline.

Images: the repository's sample photos, two real photos that ship with scikit-learn, and
generated cases sized from the encoder's input: odd sizes and aspect ratios, near the aspect
limit, greyscale, palette, CMYK JPEG, small, and large (decoded at reduced scale by the service).
Each is tagged with what the comparison means:

- ``exact``: the service decodes it at full scale, so the tensors should agree to rounding;
- ``reduced``: the service decodes it at reduced scale (JPEG DCT scaling or band reduction
  of very large images), a saving bought with a small, bounded difference;
- ``departure``: the service deliberately differs from every reference (EXIF orientation
  applied, transparency composited onto white, 16-bit greyscale scaled rather than clipped):
  measured and reported, never a failure.

Texts: plain, mixed case, surrounded by whitespace, far past the encoder's length, several
scripts and emoji; and as departures, text that is empty after cleaning (the service refuses it)
and text in decomposed Unicode (the service composes it, NFC).
"""

from __future__ import annotations

import importlib.util
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from app.bundle.manifest import ImagePreprocess

Kind = Literal["exact", "reduced", "departure"]
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
# EXIF orientation 6: the stored pixels must be turned 90 degrees clockwise to display.
_EXIF_ROTATE_CW = 6


@dataclass(frozen=True)
class ParityImage:
    name: str
    data: bytes
    kind: Kind
    note: str = ""


@dataclass(frozen=True)
class ParityText:
    name: str
    text: str
    kind: Kind
    note: str = ""


def _photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth colour field with texture and edges: resizes differ on it as on photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for c in range(3):
        fx, fy = rng.uniform(2, 9, size=2) * np.pi / max(width, height)
        field = 127 + 90 * np.sin(x * fx + c) * np.cos(y * fy - c)
        channels.append(field)
    pixels = np.stack(channels, axis=-1)
    pixels += rng.normal(0, 12, size=pixels.shape)
    # A few hard edges (rectangles), which filters and offsets show most.
    for _ in range(4):
        x0, y0 = rng.integers(0, max(1, width - 2)), rng.integers(0, max(1, height - 2))
        pixels[y0 : y0 + max(1, height // 5), x0 : x0 + max(1, width // 6)] = rng.uniform(0, 255, 3)
    clipped: np.ndarray = np.clip(pixels, 0, 255).astype(np.uint8)
    return clipped


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(_photo_like(width, height, seed), "RGB")


def _target_side(spec: ImagePreprocess) -> int:
    """The resized short side (or the larger exact side): what sizes are chosen from."""
    if spec.resize == "short_side":
        return spec.short_side
    return max(spec.resize_height or 1, spec.resize_width or 1)


def _sample_photos() -> list[ParityImage]:
    photos = [
        ParityImage(f"sample {path.stem}", path.read_bytes(), "exact", "repository sample")
        for path in sorted(SAMPLES.glob("*.png"))
    ]
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        folder = Path(spec.origin).parent / "datasets" / "images"
        for name in ("china.jpg", "flower.jpg"):  # scikit-learn's sample photos (427x640)
            if (folder / name).is_file():
                photos.append(
                    ParityImage(f"photo {name}", (folder / name).read_bytes(), "exact", "photo")
                )
    return photos


def parity_images(
    spec: ImagePreprocess, *, min_side: int = 1, max_pixels: int | None = None, large: bool = True
) -> list[ParityImage]:
    """The image corpus for an encoder whose preprocessing is ``spec``, served with the
    smallest accepted side ``min_side`` and at most ``max_pixels`` pixels (``large``: the
    images the service decodes at reduced scale, one of them near ``max_pixels``)."""
    t = _target_side(spec)
    small_w, small_h = max(9, min_side + 3), max(7, min_side)
    odd_w, odd_h = int(t * 1.7) + 3, int(t * 1.1) + 1
    images = [
        *_sample_photos(),
        ParityImage("odd landscape PNG", _encode(_rgb(odd_w, odd_h, 1), "PNG"), "exact"),
        ParityImage(
            "odd portrait JPEG", _encode(_rgb(odd_h, odd_w, 2), "JPEG", quality=90), "exact"
        ),
        ParityImage("square PNG at the target", _encode(_rgb(t, t, 3), "PNG"), "exact"),
        ParityImage(
            "wide 4.6:1 PNG", _encode(_rgb(int(t * 5.5) + 1, int(t * 1.2), 4), "PNG"), "exact"
        ),
        ParityImage(
            "near the aspect limit (19.5:1) PNG",
            _encode(_rgb(int(t * 1.1 * 19.5), int(t * 1.1), 5), "PNG"),
            "exact",
        ),
        ParityImage(
            f"small {small_w}x{small_h} PNG", _encode(_rgb(small_w, small_h, 6), "PNG"), "exact"
        ),
        ParityImage("greyscale PNG", _encode(_rgb(odd_w, odd_h, 7).convert("L"), "PNG"), "exact"),
        ParityImage(
            "palette PNG",
            _encode(_rgb(odd_w, odd_h, 8).quantize(colors=64), "PNG"),
            "exact",
        ),
        ParityImage(
            "CMYK JPEG",
            _encode(_rgb(odd_w, odd_h, 9).convert("CMYK"), "JPEG", quality=92),
            "exact",
        ),
        *_departures(odd_w, odd_h),
    ]
    if large:
        images += [
            ParityImage(
                "large JPEG (reduced-scale decode)",
                _encode(_rgb(t * 5 + 7, t * 4 + 3, 10), "JPEG", quality=90),
                "reduced",
                "decoded by libjpeg at reduced scale, then resized",
            ),
            ParityImage(
                "very large PNG (band reduction)",
                _encode(_rgb(t * 9 + 5, t * 7 + 1, 11), "PNG"),
                "reduced",
                "reduced band by band before the exact resize",
            ),
        ]
        if max_pixels is not None:
            images.append(_near_pixel_limit(max_pixels))
    return images


def _near_pixel_limit(max_pixels: int) -> ParityImage:
    """A 4:3 JPEG of about 90% of ``max_pixels``, upscaled from a small photo-like field (the
    pixels are cheap to make; the decode is what is near the limit)."""
    height = math.isqrt(int(max_pixels * 0.9 * 3 / 4))
    width = height * 4 // 3
    image = _rgb(400, 300, 15).resize((width, height), Image.Resampling.BICUBIC)
    return ParityImage(
        f"near the pixel limit ({width}x{height}) JPEG",
        _encode(image, "JPEG", quality=85),
        "reduced",
        f"{width * height / 1e6:.1f} megapixels, decoded at reduced scale",
    )


def _departures(width: int, height: int) -> list[ParityImage]:
    rgba = _rgb(width, height, 12).convert("RGBA")
    alpha = np.full((height, width), 255, dtype=np.uint8)
    alpha[: height // 2] = 0  # the top half transparent, hiding coloured pixels
    rgba.putalpha(Image.fromarray(alpha, "L"))
    rotated = _rgb(width, height, 13)
    exif = rotated.getexif()
    exif[0x0112] = _EXIF_ROTATE_CW
    deep = (np.asarray(_rgb(width, height, 14).convert("L"), dtype=np.uint16) * 257).astype(
        np.uint16
    )
    return [
        ParityImage(
            "RGBA PNG, half transparent",
            _encode(rgba, "PNG"),
            "departure",
            "the service composites transparency onto white; the reference drops alpha",
        ),
        ParityImage(
            "JPEG with EXIF orientation 6",
            _encode(rotated, "JPEG", quality=90, exif=exif.tobytes()),
            "departure",
            "the service applies the EXIF orientation; the reference does not",
        ),
        ParityImage(
            "16-bit greyscale PNG",
            _encode(Image.fromarray(deep), "PNG"),
            "departure",
            "the service scales 16-bit greyscale to 8 bits; Pillow's convert clips it",
        ),
    ]


def parity_texts(max_length: int) -> list[ParityText]:
    """The text corpus for an encoder that reads ``max_length`` tokens."""
    long_text = " ".join(
        f"word{i} with a description of the product, its colour and its size"
        for i in range(max(8, max_length // 4))
    )
    return [
        ParityText("plain", "a red running shoe for sport", "exact"),
        ParityText("mixed case", "Slim-Fit WOOL Trousers in Charcoal GREY", "exact"),
        ParityText("whitespace around", "   a leather handbag \n\t", "exact"),
        ParityText("punctuation and digits", "Size 42 (EU), 100% cotton; £19.99!", "exact"),
        ParityText("past max length", long_text, "exact", "truncated to max_length tokens"),
        ParityText("Chinese", "红色的跑步鞋，适合运动", "exact"),
        ParityText("Arabic", "حذاء رياضي أحمر للجري", "exact"),
        ParityText("Cyrillic", "Красные кроссовки для бега", "exact"),
        ParityText("emoji", "summer dress 👗☀️ with flowers 🌸", "exact"),
        ParityText(
            "empty after cleaning",
            " \u200b\u200b ",
            "departure",
            "the service refuses text with nothing visible (400); the reference embeds it",
        ),
        ParityText(
            "decomposed accents (NFD)",
            "cafe\u0301 cre\u0300me bru\u0302le\u0301e",
            "departure",
            "the service composes Unicode (NFC) before tokenising",
        ),
    ]
