"""Reference preprocessing: the plain, unoptimised definition the default bundle is built with.

Export scripts feed tensors made here to torch and to ONNX Runtime, and the head is trained on
embeddings of tensors made here. The service's own decoder (``app.preprocess.image``) is tested
to produce the same tensor. No JPEG draft mode, no shortcuts: full decode, then resize.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from app.bundle.manifest import ImagePreprocess

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# The default bundle's image preprocessing (EfficientNet-Lite0 as trained by its authors).
EFFICIENTNET_LITE_PREPROCESS = ImagePreprocess(
    color_mode="RGB",
    resize_short_side=256,
    crop_size=224,
    interpolation="bilinear",
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    layout="NCHW",
)


def reference_image_tensor(source: bytes | str | Path, spec: ImagePreprocess) -> np.ndarray:
    """Return the encoder input for one image as float32, without the batch axis."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(raw)) as opened:
        image = ImageOps.exif_transpose(opened)
        image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "PA", "P") else image.mode)
        if image.mode == "RGBA":
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        image = image.convert("L" if spec.color_mode == "L" else "RGB")

    width, height = image.size
    if spec.resize == "exact":
        assert spec.resize_height is not None
        assert spec.resize_width is not None
        size = (spec.resize_width, spec.resize_height)
    else:
        short, long = min(width, height), max(width, height)
        new_short = (
            spec.resize_short_side
            if spec.resize_short_side is not None
            else math.floor(float(spec.crop_size or 0) / float(spec.crop_pct or 1.0))
        )
        exact_long = new_short * long / short
        new_long = int(exact_long) if spec.long_side_rounding == "floor" else round(exact_long)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
    image = image.resize(size, _RESAMPLE[spec.interpolation])

    if spec.crop_size is not None:
        crop = spec.crop_size
        if spec.crop_offset_rounding == "floor":
            left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
        else:
            left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
        image = image.crop((left, top, left + crop, top + crop))

    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.color_mode == "BGR":
        pixels = pixels[:, :, ::-1]
    pixels = pixels * np.float32(spec.rescale_factor)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    pixels = (pixels - mean) / std
    if spec.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels, dtype=np.float32)
