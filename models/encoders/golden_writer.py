"""Write a bundle's golden inputs: a few inputs with the embeddings its encoders give them here.

``write_golden`` embeds images and texts through the served path (``app.core.golden_check``
``golden_embeddings``, the function the service's check uses), writes ``golden.json`` into the
bundle and returns the manifest's ``golden`` entry. ``golden_images`` and ``golden_texts`` are
the default inputs: small, varied (a PNG with a gradient and noise, a JPEG photo, a greyscale
and an RGBA PNG; plain, mixed-case, non-Latin and long texts) and the same on every run.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.bundle.golden_inputs import GoldenFile, dimensions, parse_golden
from app.bundle.loader import sha256_file
from app.bundle.manifest import DEFAULT_MIN_COSINE, GoldenInputs
from app.core.encoder_pipeline import EncoderPipeline
from app.core.golden_check import golden_embeddings, runtime_versions

GOLDEN_FILE = "golden.json"
_SEED = 20_281  # fixed: the default inputs never change between runs or machines


def _png(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _gradient_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    noisy = base + rng.normal(0.0, 12.0, size=base.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth shapes over a sky-like background with texture: what a JPEG is made for."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    sky = np.stack([90 + 60 * y / height, 140 + 50 * y / height, 220 - 40 * y / height], -1)
    disc = ((x - 0.35 * width) ** 2 + (y - 0.55 * height) ** 2) < (0.22 * height) ** 2
    sky[disc] = [200.0, 60.0, 40.0]
    ground = y > 0.75 * height
    sky[ground] = [70.0, 120.0, 50.0]
    texture = rng.normal(0.0, 6.0, size=sky.shape)
    return np.clip(np.rint(sky + texture), 0, 255).astype(np.uint8)


def golden_images() -> dict[str, bytes]:
    """The default golden images by name: a 97x61 RGB PNG (gradient and noise), a 120x80 JPEG
    photo (quality 90), a 64x48 greyscale PNG and a 50x70 RGBA PNG; each under 30 KB."""
    rng = np.random.default_rng(_SEED)
    jpeg = io.BytesIO()
    Image.fromarray(_photo(rng, 80, 120), "RGB").save(jpeg, format="JPEG", quality=90)
    grey = _gradient_noise(rng, 48, 64).mean(axis=-1).astype(np.uint8)
    rgb = _gradient_noise(rng, 70, 50)
    alpha = np.clip(np.linspace(40, 255, 50)[None, :].repeat(70, 0), 0, 255).astype(np.uint8)
    return {
        "gradient.png": _png(_gradient_noise(rng, 61, 97), "RGB"),
        "photo.jpg": jpeg.getvalue(),
        "grey.png": _png(grey, "L"),
        "transparent.png": _png(np.dstack([rgb, alpha]), "RGBA"),
    }


def golden_texts() -> list[str]:
    """The default golden texts: plain, mixed case with punctuation, non-Latin, and long."""
    return [
        "a photo of a small red cat",
        "Blue Denim JACKET, size M - Worn Twice!",
        "一只在草地上奔跑的小狗 (собака на траве)",
        " ".join(["a long description of a striped cotton shirt with buttons and a collar"] * 8),
    ]


def golden_dict(
    pipeline: EncoderPipeline, images: Mapping[str, bytes], texts: Sequence[str]
) -> dict[str, Any]:
    """The golden file's contents: ``images`` and ``texts`` with their served embeddings and
    the versions that computed them."""
    image_embeddings, text_embeddings = golden_embeddings(pipeline, list(images.values()), texts)
    return {
        "images": [
            {
                "name": name,
                "data_base64": base64.b64encode(data).decode("ascii"),
                "embedding": _floats(embedding),
            }
            for (name, data), embedding in zip(images.items(), image_embeddings, strict=True)
        ],
        "texts": [
            {"text": text, "embedding": _floats(embedding)}
            for text, embedding in zip(texts, text_embeddings, strict=True)
        ],
        "exported_with": runtime_versions(),
    }


def _floats(embedding: np.ndarray) -> list[float]:
    # float32's shortest round-trip text: exact, and half as long as float64's.
    return [float(str(value)) for value in np.asarray(embedding, dtype=np.float32).ravel()]


def write_golden(
    bundle_dir: Path,
    pipeline: EncoderPipeline,
    images: Mapping[str, bytes],
    texts: Sequence[str],
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> dict[str, Any]:
    """Embed ``images`` (encoded files by name) and ``texts`` with ``pipeline`` (the bundle's
    encoders, loaded as the service loads them), write ``golden.json`` into ``bundle_dir`` and
    return the manifest's ``golden`` entry (file, sha256, min_cosine). The file is checked by
    the service's own schema first."""
    raw = golden_dict(pipeline, images, texts)
    data = (json.dumps(raw, ensure_ascii=False) + "\n").encode("utf-8")
    parse_golden(data, dimensions(pipeline.manifest))
    path = bundle_dir / GOLDEN_FILE
    path.write_bytes(data)
    entry = {"file": GOLDEN_FILE, "sha256": sha256_file(path), "min_cosine": min_cosine}
    GoldenInputs.model_validate(entry)
    return entry


def rewrite_golden(
    golden: GoldenFile, bundle_dir: Path, pipeline: EncoderPipeline, min_cosine: float
) -> dict[str, Any]:
    """The same golden inputs as ``golden`` (another bundle's), embedded by ``pipeline``
    into ``bundle_dir``: for a bundle whose encoders were rewritten (quantised, converted)."""
    images = {image.name: image.data() for image in golden.images}
    return write_golden(
        bundle_dir, pipeline, images, [text.text for text in golden.texts], min_cosine
    )
