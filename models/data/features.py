"""Embed a labelled dataset with a bundle's own encoders, through the service's own code.

``train-head`` and ``evaluate`` both need image and text features for every example. They get
them here, from ``app.core.engine.build_engine`` (the bundle's ONNX files, its manifest's
preprocessing, the service's ``ImageDecoder``, ``clean_text`` and ``TextTokenizer``), so a
head is trained on exactly the features the service will feed it: one code path, no drift.

* Images are decoded on a thread pool and encoded in batches (image features do not depend on
  their batch companions).
* Texts are encoded one at a time, as a single request to the service encodes them (padded to
  the same length bucket). In a padded batch an embedding shifts slightly (~1e-7) with its
  batch companions, which would make a trained head depend on what the cache held.
* Rows are cached on disk, keyed by the encoder (and preprocessing) that made them and by the
  image's bytes or the cleaned text, so a re-run embeds only what is new, and a changed
  encoder never reuses stale rows. The cache is append-only: each run adds shard files, saved
  every ``SHARD_ROWS`` new rows, so an interrupted run keeps most of its work.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from app.bundle import EncoderBundle
from app.bundle.loader import sha256_file
from app.config.settings import Settings
from app.core.encoder_pipeline import EncoderPipeline
from app.core.encoders import Encoders, build_encoders
from app.core.engine import Engine, build_engine
from app.errors import RequestError
from app.preprocess.text import clean_text
from models.data.dataset import Example

DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "features"
IMAGE_BATCH = 32
SHARD_ROWS = 4096

_T = TypeVar("_T")
Device = Literal["auto", "cuda", "cpu"]
DEVICES: tuple[Device, ...] = ("auto", "cuda", "cpu")


class FeatureError(ValueError):
    """An example the bundle's preprocessing refuses; the message names its file and line."""


@dataclass(frozen=True)
class Features:
    """Features of some examples, one row each, in the examples' order."""

    image: np.ndarray  # float32 [N, image embedding_dim]
    text: np.ndarray  # float32 [N, text embedding_dim]

    def __len__(self) -> int:
        return len(self.image)

    def take(self, rows: np.ndarray) -> Features:
        return Features(image=self.image[rows], text=self.text[rows])


def load_engine(bundle_dir: Path, threads: int = 0, device: Device = "cpu") -> Engine:
    """The bundle as the service loads it (hashes and signatures checked), on CPU unless
    ``device`` says otherwise (the service's own ``device`` setting)."""
    return build_engine(_tool_settings(bundle_dir, threads, device))


def load_encoders(bundle_dir: Path, threads: int = 0, device: Device = "cpu") -> Encoders:
    """A base bundle's encoders (or a servable bundle's), as the service loads them."""
    return build_encoders(_tool_settings(bundle_dir, threads, device))


def _tool_settings(bundle_dir: Path, threads: int, device: Device) -> Settings:
    return Settings(
        bundle_path=bundle_dir,
        device=device,
        intra_op_threads=threads,
        text_cache_size=0,
        exit_on_startup_failure=False,
    )


class EncoderSource(Protocol):
    """What features are computed with: a servable bundle's ``Engine`` or a base bundle's
    ``Encoders``."""

    @property
    def bundle(self) -> EncoderBundle: ...

    @property
    def pipeline(self) -> EncoderPipeline: ...

    @property
    def max_text_chars(self) -> int: ...


class RowCache:
    """Float32 rows keyed by strings, in append-only ``.npz`` shards under one directory."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.rows: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        if directory is not None and directory.is_dir():
            for shard in sorted(directory.glob("*.npz")):
                with np.load(shard) as data:
                    self.rows.update(zip(data["keys"].tolist(), data["rows"], strict=True))

    def get(self, key: str) -> np.ndarray | None:
        return self.rows.get(key)

    def put(self, key: str, row: np.ndarray) -> None:
        self.rows[key] = row
        self._pending[key] = row
        if len(self._pending) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the rows added since the last flush as a new shard (atomically)."""
        if self.directory is None or not self._pending:
            self._pending.clear()
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        keys = list(self._pending)
        name = f"{uuid.uuid4().hex}.npz"
        staging = self.directory / f".{name}.partial"
        with staging.open("wb") as handle:
            np.savez(handle, keys=np.asarray(keys), rows=np.stack([self._pending[k] for k in keys]))
        os.replace(staging, self.directory / name)
        self._pending.clear()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class FeatureExtractor:
    """Image and text features of dataset examples, from one bundle's encoders."""

    def __init__(
        self,
        engine: EncoderSource,
        cache_dir: Path | None = DEFAULT_CACHE_DIR,
        *,
        progress: bool = True,
        decode_threads: int = 2,
    ) -> None:
        self.engine = engine
        manifest = engine.bundle.manifest
        image_spec, text_spec = manifest.image_encoder, manifest.text_encoder
        preprocess = json.dumps(image_spec.preprocess.model_dump(mode="json"), sort_keys=True)
        image_key = _digest(image_spec.sha256, image_spec.output, preprocess)
        # Version 2's text fields (prompt, padding, pad id) change the rows: keyed when set.
        text_options = {name: getattr(text_spec, name) for name in text_spec.version_2_fields()}
        text_key = _digest(
            text_spec.sha256,
            text_spec.tokenizer.sha256,
            str(text_spec.max_length),
            text_spec.output,
            *([json.dumps(text_options, sort_keys=True)] if text_options else []),
        )
        self._images = RowCache(None if cache_dir is None else cache_dir / f"image-{image_key}")
        self._texts = RowCache(None if cache_dir is None else cache_dir / f"text-{text_key}")
        self.progress = progress
        self.decode_threads = decode_threads

    def extract(self, examples: Sequence[Example]) -> Features:
        """Features of ``examples``, in order; only rows not in the cache are computed."""
        image_keys = [sha256_file(example.image) for example in examples]
        texts = [self._clean(example) for example in examples]
        todo = _first_missing(zip(image_keys, examples, strict=True), self._images)
        self._embed_images(todo)
        return Features(
            image=np.stack([self._row(self._images, key) for key in image_keys]),
            text=self._embed_texts(texts),
        )

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text features of ``texts`` alone, in order, exactly as ``extract`` computes them."""
        return self._embed_texts(
            [self._clean_text(text, f"text {i}") for i, text in enumerate(texts)]
        )

    def _clean(self, example: Example) -> str:
        return self._clean_text(example.text, f"{_where(example)}: field 'text'")

    def _clean_text(self, text: str, where: str) -> str:
        try:
            return clean_text(text, self.engine.max_text_chars)
        except RequestError as exc:
            raise FeatureError(f"{where}: {exc.message}") from None

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """Rows of cleaned ``texts``; each one not cached is encoded alone (a batch of one)."""
        pipeline = self.engine.pipeline
        for_text = _first_missing(((t, t) for t in texts), self._texts)
        with self._bar(len(for_text), "texts") as bar:
            for text, _ in for_text:
                token_ids = pipeline.tokenizer.encode(text)
                self._texts.put(text, pipeline.encode_texts([token_ids])[0])
                bar.update(1)
        self._texts.flush()
        return np.stack([self._row(self._texts, text) for text in texts])

    def _decode(self, example: Example) -> np.ndarray:
        try:
            return self.engine.pipeline.decoder(example.image.read_bytes())
        except RequestError as exc:
            raise FeatureError(f"{_where(example)}: image {example.image}: {exc.message}") from None
        except OSError as exc:
            raise FeatureError(f"{_where(example)}: image {example.image}: {exc}") from None

    def _embed_images(self, todo: list[tuple[str, Example]]) -> None:
        pipeline = self.engine.pipeline
        batches = [todo[i : i + IMAGE_BATCH] for i in range(0, len(todo), IMAGE_BATCH)]
        # Decode the next batch on threads while ONNX Runtime (which releases the GIL)
        # encodes the current one.
        with (
            ThreadPoolExecutor(self.decode_threads) as pool,
            self._bar(len(todo), "images") as bar,
        ):

            def submit(batch: list[tuple[str, Example]]) -> list[Future[np.ndarray]]:
                return [pool.submit(self._decode, example) for _, example in batch]

            following = submit(batches[0]) if batches else []
            for index, batch in enumerate(batches):
                current = following
                if index + 1 < len(batches):
                    following = submit(batches[index + 1])
                features = pipeline.encode_images(np.stack([f.result() for f in current]))
                for (key, _), row in zip(batch, features, strict=True):
                    self._images.put(key, row)
                bar.update(len(batch))
        self._images.flush()

    def _bar(self, total: int, unit: str) -> tqdm[NoReturn]:
        return tqdm(
            total=total,
            unit=unit[:-1],
            desc=f"embedding {unit}",
            disable=not self.progress or total == 0,
        )

    @staticmethod
    def _row(cache: RowCache, key: str) -> np.ndarray:
        row = cache.get(key)
        if row is None:  # every key was embedded above
            raise RuntimeError(f"feature row {key!r} missing after embedding")
        return row


def _first_missing(pairs: Iterable[tuple[str, _T]], cache: RowCache) -> list[tuple[str, _T]]:
    """Each key not in ``cache``, once, with its first value, in order."""
    seen: dict[str, _T] = {}
    for key, value in pairs:
        if key not in seen and cache.get(key) is None:
            seen[key] = value
    return list(seen.items())


def _where(example: Example) -> str:
    return f"line {example.line}"
