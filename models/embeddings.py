"""Embed Fashion-MNIST images and texts with the exported bundle encoders, with a disk cache.

Images go through exactly the service's path: 28x28 greyscale array -> PNG bytes ->
``models.reference.reference_image_tensor`` (converted to RGB, resized, cropped, normalised) ->
``image_encoder.onnx``. Texts go through ``tokenizer.json`` (truncate at 128) ->
``text_encoder.onnx``, one text at a time. Embeddings are cached under ``models/.cache/``
(git-ignored), keyed by the encoder files' sha256, so a re-export with different bytes never
reuses stale rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

from app.bundle.loader import sha256_file
from models import export_image_encoder as image_export
from models import export_text_encoder as text_export
from models._export_utils import cpu_session
from models.fashion_mnist import png_bytes
from models.reference import EFFICIENTNET_LITE_PREPROCESS, reference_image_tensor

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
IMAGE_BATCH = 64
_PROGRESS_EVERY = 5000

_Key = TypeVar("_Key", int, str)


def _log(message: str) -> None:
    print(message, flush=True)


def _image_batch_tensor(images: np.ndarray) -> np.ndarray:
    spec = EFFICIENTNET_LITE_PREPROCESS
    return np.stack([reference_image_tensor(png_bytes(image), spec) for image in images])


class ImageEmbedder:
    """``image_encoder.onnx`` features for 28x28 greyscale images, cached per split and index."""

    def __init__(self, encoder_path: Path, cache_dir: Path = CACHE_DIR) -> None:
        self.session = cpu_session(encoder_path)
        self.cache_dir = cache_dir
        self.key = sha256_file(encoder_path)[:16]

    def _encode(self, images: np.ndarray, label: str) -> np.ndarray:
        out = np.empty((len(images), image_export.FEATURES_DIM), dtype=np.float32)
        starts = range(0, len(images), IMAGE_BATCH)
        started, next_report = time.perf_counter(), _PROGRESS_EVERY
        # Preprocess the next batch on a thread while ONNX Runtime (which releases the GIL)
        # runs the current one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_image_batch_tensor, images[:IMAGE_BATCH])
            for start in starts:
                batch = pending.result()
                following = images[start + IMAGE_BATCH : start + 2 * IMAGE_BATCH]
                pending = pool.submit(_image_batch_tensor, following)
                feeds = {image_export.INPUT_NAME: batch}
                out[start : start + len(batch)] = self.session.run(
                    [image_export.FEATURES_NAME], feeds
                )[0]
                done = start + len(batch)
                if done >= next_report or done == len(images):
                    rate = (time.perf_counter() - started) / done * 1000
                    _log(f"  {label}: {done}/{len(images)} images ({rate:.1f} ms/image)")
                    next_report += _PROGRESS_EVERY
        return out

    def embed(self, split: str, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Features of ``images[indices]``; only rows not yet cached are computed."""
        path = self.cache_dir / f"image-{split}-{self.key}.npz"
        cached = _load_cache(path)
        missing = np.setdiff1d(indices, np.fromiter(cached, dtype=np.int64, count=len(cached)))
        if len(missing):
            _log(f"- embedding {len(missing)} {split} images ({len(cached)} cached)")
            rows = self._encode(images[missing], split)
            cached.update(zip(missing.tolist(), rows, strict=True))
            _save_cache(path, cached)
        return np.stack([cached[int(i)] for i in indices])


class TextEmbedder:
    """``text_encoder.onnx`` embeddings; each distinct text is embedded once and cached."""

    def __init__(self, encoder_path: Path, tokenizer_path: Path, cache_dir: Path = CACHE_DIR):
        self.session = cpu_session(encoder_path)
        self.tokenizer = text_export.load_tokenizer(tokenizer_path)
        self.cache_path = cache_dir / (
            f"text-{sha256_file(encoder_path)[:16]}-{sha256_file(tokenizer_path)[:16]}.npz"
        )

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        # One text per run, on purpose: in a padded batch an embedding changes (~1e-7) with its
        # batch companions (padding length, GEMM blocking), which would make the trained head
        # depend on what the cache happened to hold. Batch 1 is also what a single request to
        # the service computes. Images do not need this: their features are batch-independent.
        out = np.empty((len(texts), text_export.EMBEDDING_DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            feeds = text_export.tokenize(self.tokenizer, [text])
            out[row] = self.session.run([text_export.OUTPUT_NAME], feeds)[0][0]
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        cached = _load_cache(self.cache_path)
        missing = sorted(set(texts) - cached.keys())
        if missing:
            _log(f"- embedding {len(missing)} distinct texts ({len(cached)} cached)")
            started = time.perf_counter()
            cached.update(zip(missing, self._encode(missing), strict=True))
            _save_cache(self.cache_path, cached)
            _log(f"  {(time.perf_counter() - started) / len(missing) * 1000:.2f} ms/text")
        return np.stack([cached[text] for text in texts])


def _load_cache(path: Path) -> dict[Any, np.ndarray]:
    """Rows keyed by dataset index (images) or by text, as saved by ``_save_cache``."""
    if not path.is_file():
        return {}
    with np.load(path) as data:
        return dict(zip(data["keys"].tolist(), data["rows"], strict=True))


def _save_cache(path: Path, rows: dict[_Key, np.ndarray]) -> None:
    keys = sorted(rows)
    _atomic_save(path, lambda f: np.savez(f, keys=np.asarray(keys), rows=_stack(rows, keys)))


def _stack(rows: dict[_Key, np.ndarray], keys: list[_Key]) -> np.ndarray:
    return np.stack([rows[k] for k in keys])


def _atomic_save(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file so an interrupted run never leaves a truncated cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".partial")
    with staging.open("wb") as handle:
        write(handle)
    staging.replace(path)
