"""The fixed, seeded request set: realistic photos + product texts, as multipart bodies.

Images come from the two real photos scikit-learn ships (``china.jpg``, ``flower.jpg``,
640x427 each), cropped and resized to common upload sizes between 640x480 and 1600x1200 and
saved as JPEG (most) or PNG (some), so decode cost is that of real uploads rather than of tiny
synthetic images.

Texts are generated product descriptions, read from ``payload_texts.json`` beside this module.
That file was made once, from the default bundle's title generator
(``models.recipes.fashion_mnist.titles.describe`` at commit 87c5d32), with exactly the draws
this module made from the seeded generator when it called that recipe itself: the same seed,
continuing after the image draws, duplicates skipped. So the request set, and every body
sent, is byte for byte what it was, and the harness does not depend on a recipe. The file
holds the texts for the seed 20240603 after 48 images (10,000 texts) and after 8 images (200
texts): every set the suites build; ``build_requests`` refuses any other.

FusionServe's pipeline keeps an LRU cache of text embeddings, so a benchmark that repeats a
few dozen texts would measure the cache, not the models. Request ``i`` therefore pairs image
``i mod images`` with text ``i mod texts`` from a pool of thousands of distinct descriptions:
within one server's lifetime no text repeats (the cache-cold case; every system runs the same
pipeline, so repeated texts would help them all alike). The multipart body is pre-built in
two parts, once: the image part and the text part, so a request costs the client only one
bytes concatenation (a memcpy), not any encoding.
"""

from __future__ import annotations

import io
import itertools
import json
import pickle
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from bench.harness.paths import BENCH_DIR

# Common camera/phone/marketplace upload sizes (width, height), landscape and portrait.
SIZES: tuple[tuple[int, int], ...] = (
    (640, 480),
    (800, 600),
    (1024, 768),
    (1280, 960),
    (1280, 720),
    (1080, 1080),
    (960, 1280),
    (1200, 1600),
    (1600, 1200),
)
PNG_SHARE = 0.25  # screenshots and marketplace exports are often PNG
BOUNDARY = "fusionserve-bench-" + uuid.UUID(int=0x5EED).hex
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CACHE_DIR = BENCH_DIR / ".cache"
TEXTS_FILE = Path(__file__).resolve().parent / "payload_texts.json"


@dataclass(frozen=True)
class ImagePart:
    """One upload: the encoded image and its multipart part (everything before the text)."""

    data: bytes
    image_format: str
    size: tuple[int, int]
    prefix: bytes


@dataclass
class RequestSet:
    """Images x texts. ``body(i)``/``inputs(i)`` give request ``i``; ``next_index()`` hands
    out indices that continue across runs, so a server never sees a text twice."""

    images: list[ImagePart]
    texts: list[str]
    suffixes: list[bytes]
    _counter: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    content_type: str = CONTENT_TYPE

    def __len__(self) -> int:
        return len(self.texts)

    def next_index(self) -> int:
        return next(self._counter)

    def body(self, index: int) -> bytes:
        return self.images[index % len(self.images)].prefix + self.suffixes[index % len(self)]

    def inputs(self, index: int) -> tuple[bytes, str]:
        """(image bytes, text) of request ``index``, for in-process runs and checks."""
        return self.images[index % len(self.images)].data, self.texts[index % len(self)]

    def with_fields(self, fields: Mapping[str, str]) -> RequestSet:
        """The same requests with more form fields after ``text`` (e.g. ``explain``)."""
        return RequestSet(self.images, self.texts, [text_suffix(t, fields) for t in self.texts])

    def of_format(self, image_format: str) -> RequestSet:
        """The requests whose image is ``image_format`` (``JPEG`` or ``PNG``) alone, with the
        same texts; its indices continue this set's (one counter), so a server measured with
        both still never sees a text twice."""
        images = [part for part in self.images if part.image_format == image_format]
        if not images:
            raise ValueError(f"no {image_format} image in the request set")
        return RequestSet(images, self.texts, self.suffixes, self._counter)


def _photos() -> list[Image.Image]:
    """scikit-learn's sample photos, decoded as its ``load_sample_image`` decodes them (PIL,
    then an array), read from its package data without importing scikit-learn itself."""
    images = files("sklearn.datasets.images")
    photos = []
    for name in ("china.jpg", "flower.jpg"):
        with images.joinpath(name).open("rb") as file:
            photos.append(Image.fromarray(np.asarray(Image.open(file))))
    return photos


def _render(photo: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A random crop of ``photo`` with the target aspect ratio, resized to ``size``."""
    width, height = size
    aspect = width / height
    src_w, src_h = photo.size
    # The largest crop with the target aspect, then shrink it by up to 30% for variety.
    crop_w = min(src_w, int(src_h * aspect))
    crop_h = int(crop_w / aspect)
    scale = rng.uniform(0.7, 1.0)
    crop_w, crop_h = int(crop_w * scale), int(crop_h * scale)
    left = int(rng.integers(0, src_w - crop_w + 1))
    top = int(rng.integers(0, src_h - crop_h + 1))
    image = photo.crop((left, top, left + crop_w, top + crop_h))
    image = image.resize(size, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.85, 1.15)))


def _encode(image: Image.Image, fmt: str, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=int(rng.integers(80, 96)))
    else:
        image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def image_prefix(image: bytes, image_format: str) -> bytes:
    """The multipart body up to the ``text`` field's value: the ``image`` file part."""
    ext, mime = ("jpg", "image/jpeg") if image_format == "JPEG" else ("png", "image/png")
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="image"; filename="upload.{ext}"\r\n'
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()
    return head + image


def text_suffix(text: str, fields: Mapping[str, str] | None = None) -> bytes:
    """The rest of the body: the ``text`` field, any further ``fields``, and the closing
    boundary."""
    parts = [
        f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}'
        for name, value in {"text": text, **(fields or {})}.items()
    ]
    return ("".join(parts) + f"\r\n--{BOUNDARY}--\r\n").encode()


def _texts(count: int, images: int, seed: int) -> list[str]:
    """``count`` distinct descriptions, as drawn after ``images`` images from ``seed`` (see the
    module docstring: the pools in payload_texts.json)."""
    data = json.loads(TEXTS_FILE.read_text(encoding="utf-8"))
    pool: list[str] = (
        data["texts_after_images"].get(str(images), []) if seed == data["seed"] else []
    )
    if count > len(pool):
        raise ValueError(
            f"{TEXTS_FILE.name} has {len(pool)} texts for {images} images and seed {seed}; "
            f"{count} were asked for"
        )
    return pool[:count]


def build_requests(images: int = 48, texts: int = 10000, seed: int = 20240603) -> RequestSet:
    """The request set; identical for the same arguments.

    Cached on disk (bench/.cache) because building takes ~8 s (sklearn import, resizing, PNG
    encoding) and every benchmark process needs the same set.
    """
    # v3: the pickled ImageParts' class moved from bench.payloads to bench.harness.payloads.
    cache = CACHE_DIR / f"requests-{images}-{texts}-{seed}-v3.pickle"
    if cache.exists():
        parts, pool = pickle.loads(cache.read_bytes())
    else:
        parts, pool = _build(images, texts, seed)
        CACHE_DIR.mkdir(exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps((parts, pool)))
        tmp.replace(cache)
    return RequestSet(parts, pool, [text_suffix(t) for t in pool])


def _build(images: int, texts: int, seed: int) -> tuple[list[ImagePart], list[str]]:
    pool = _texts(texts, images, seed)  # first: a set the file cannot supply fails at once
    rng = np.random.default_rng(seed)
    photos = _photos()
    parts = []
    for index in range(images):
        size = SIZES[int(rng.integers(0, len(SIZES)))]
        fmt = "PNG" if rng.random() < PNG_SHARE else "JPEG"
        data = _encode(_render(photos[index % len(photos)], size, rng), fmt, rng)
        parts.append(ImagePart(data, fmt, size, image_prefix(data, fmt)))
    return parts, pool


TINY_TEXTS = [f"a small {c} bird near the big dog" for c in ("red", "blue", "grey", "green")]


def tiny_requests() -> RequestSet:
    """The overhead-bound request: one 64x64 JPEG (seeded noise) and one of four short texts
    in the tiny bundle's vocabulary (tests/support/tiny_bundle.py)."""
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    part = ImagePart(data, "JPEG", (64, 64), image_prefix(data, "JPEG"))
    return RequestSet([part], TINY_TEXTS, [text_suffix(t) for t in TINY_TEXTS])


def describe_requests(requests: RequestSet) -> dict[str, object]:
    """Summary of the request mix for the report."""
    sizes = np.array([len(p.data) for p in requests.images])
    return {
        "images": len(requests.images),
        "png": sum(p.image_format == "PNG" for p in requests.images),
        "jpeg": sum(p.image_format == "JPEG" for p in requests.images),
        "image_kib_median": round(float(np.median(sizes)) / 1024, 1),
        "image_kib_max": round(float(sizes.max()) / 1024, 1),
        "dimensions": sorted({f"{w}x{h}" for p in requests.images for (w, h) in [p.size]}),
        "texts": len(requests.texts),
        "distinct_texts": len(set(requests.texts)),
    }
