"""The inference pipeline: prepare one item (decode + tokenise), then run a batch of items.

``prepare`` is the CPU-bound per-request part and runs before anything is queued, so only
well-formed arrays ever reach ``run``. ``run`` takes a batch (today of one; the dynamic batcher
gathers more) through image encoder, text encoder and fusion head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.bundle.manifest import Manifest
from app.preprocess.image import ImageDecoder
from app.preprocess.text import TextTokenizer, clean_text
from app.text_cache import TextEmbeddingCache


class Session(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the pipeline uses."""

    def run(
        self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]
    ) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class PreparedItem:
    """One request, validated and turned into arrays: ready to join a batch."""

    pixels: np.ndarray
    text: str
    token_ids: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True), dtype=np.float32)


class Pipeline:
    """Image encoder + text encoder + fusion head, as one bundle describes them."""

    def __init__(
        self,
        manifest: Manifest,
        image_session: Session,
        text_session: Session,
        head_session: Session,
        decoder: ImageDecoder,
        tokenizer: TextTokenizer,
        max_text_chars: int,
        text_cache: TextEmbeddingCache | None = None,
    ) -> None:
        self.manifest = manifest
        self._image = image_session
        self._text = text_session
        self._head = head_session
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.max_text_chars = max_text_chars
        self.text_cache = text_cache if text_cache is not None else TextEmbeddingCache(0)

    def prepare(self, image: bytes, text: str) -> PreparedItem:
        """Validate and preprocess one request; raises ``RequestError`` subclasses."""
        cleaned = clean_text(text, self.max_text_chars)
        return PreparedItem(
            pixels=self.decoder(image), text=cleaned, token_ids=self.tokenizer.encode(cleaned)
        )

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        spec = self.manifest.image_encoder
        (features,) = self._image.run([spec.output], {spec.input: pixels})
        return features

    def encode_texts(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        spec = self.manifest.text_encoder
        batch = self.tokenizer.pad(token_ids)
        feed = {spec.input_ids: batch.input_ids}
        if spec.attention_mask is not None:
            feed[spec.attention_mask] = batch.attention_mask
        if spec.token_type_ids is not None:
            feed[spec.token_type_ids] = np.zeros_like(batch.input_ids)
        (embeddings,) = self._text.run([spec.output], feed)
        return embeddings

    def text_features(self, items: Sequence[PreparedItem]) -> np.ndarray:
        """Text embeddings for a batch: cached ones reused, each distinct miss encoded once."""
        found: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        for item in items:
            if item.text in found or item.text in missing:
                continue
            cached = self.text_cache.get(item.text)
            if cached is None:
                missing[item.text] = item.token_ids
            else:
                found[item.text] = cached
        if missing:
            encoded = self.encode_texts(list(missing.values()))
            for text, embedding in zip(missing, encoded, strict=True):
                self.text_cache.put(text, embedding)
                found[text] = embedding
        return np.stack([found[item.text] for item in items])

    def fuse(self, image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """Class probabilities [N, classes] from the two embeddings."""
        spec = self.manifest.fusion_head
        (scores,) = self._head.run(
            [spec.output],
            {
                spec.image_input: image_features.astype(np.float32, copy=False),
                spec.text_input: text_features.astype(np.float32, copy=False),
            },
        )
        if spec.output_type == "logits":
            return softmax(scores)
        return np.asarray(scores, dtype=np.float32)

    def run(self, items: Sequence[PreparedItem]) -> np.ndarray:
        """Class probabilities for a batch of prepared items, one row per item, in order."""
        pixels = np.stack([item.pixels for item in items])
        image_features = self.encode_images(pixels)
        text_features = self.text_features(items)
        probabilities = self.fuse(image_features, text_features)
        if probabilities.shape != (len(items), len(self.manifest.labels)):
            raise RuntimeError(
                f"fusion head returned shape {probabilities.shape} for {len(items)} items and "
                f"{len(self.manifest.labels)} labels"
            )
        return probabilities
