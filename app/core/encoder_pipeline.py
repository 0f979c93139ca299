"""The encoders of a bundle: prepare one item (decode + tokenise), then embed batches.

What a servable bundle's pipeline (``app.core.pipeline``) shares with the tools that only embed
(feature extraction for ``train-head``, the parity checks of ``export-encoders``), and all a
base bundle (encoders, no head) can do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from opentelemetry.trace import Tracer

from app.bundle.manifest import EncodersManifest, Modality
from app.core.text_cache import TextEmbeddingCache
from app.preprocess.decode_budget import DecodeBudget
from app.preprocess.image import ImageDecoder, OpenedImage
from app.preprocess.text import TextTokenizer


class Session(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the pipeline uses."""

    def run(
        self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]
    ) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class PreparedItem:
    """One request, validated and turned into arrays: ready to join a batch.

    A request may lack one modality (when the bundle's head accepts that): its fields are then
    ``None``."""

    pixels: np.ndarray | None
    text: str | None
    token_ids: np.ndarray | None
    explain: bool = False  # also answer without the image and without the text (run_items)

    @property
    def missing(self) -> Modality | None:
        """The modality this item lacks, if any."""
        if self.pixels is None:
            return "image"
        if self.token_ids is None:
            return "text"
        return None


class EncoderPipeline:
    """Image encoder + text encoder, as one bundle describes them."""

    def __init__(
        self,
        manifest: EncodersManifest,
        image_session: Session,
        text_session: Session,
        decoder: ImageDecoder,
        tokenizer: TextTokenizer,
        text_cache: TextEmbeddingCache | None = None,
    ) -> None:
        self.manifest = manifest
        self._image = image_session
        self._text = text_session
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.text_cache = text_cache if text_cache is not None else TextEmbeddingCache(0)
        self.tracer: Tracer | None = (
            None  # a span per model call when set (app.observability.tracing)
        )

    def prepare(
        self,
        image: bytes | OpenedImage | None,
        text: str | None,
        explain: bool = False,
        budget: DecodeBudget | None = None,
    ) -> PreparedItem:
        """Decode and tokenise one item that passed the request policy
        (``app.core.request_policy``: its text cleaned, its modalities and ``explain`` allowed);
        raises ``RequestError`` subclasses for an image that cannot be decoded. The image
        may come already opened (``ImageDecoder.open``; ``ImageDecoder.decode`` says who
        closes it). With ``budget``, the image decode reserves its memory from it, which may
        raise ``RoomWanted`` or ``TooLate``."""
        if isinstance(image, OpenedImage):
            pixels: np.ndarray | None = self.decoder.decode(image, budget)
        else:
            pixels = None if image is None else self.decoder(image, budget)
        token_ids = None if text is None else self.tokenizer.encode(text)
        return PreparedItem(pixels=pixels, text=text, token_ids=token_ids, explain=explain)

    def image_feed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The image encoder's inputs for a batch of decoded images."""
        return {self.manifest.image_encoder.input: pixels}

    def text_feed(self, token_ids: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The text encoder's inputs for a batch of token id sequences (padded together)."""
        spec = self.manifest.text_encoder
        batch = self.tokenizer.pad(token_ids)
        feed = {spec.input_ids: batch.input_ids}
        if spec.attention_mask is not None:
            feed[spec.attention_mask] = batch.attention_mask
        if spec.token_type_ids is not None:
            feed[spec.token_type_ids] = np.zeros_like(batch.input_ids)
        return feed

    @contextlib.contextmanager
    def _model_span(self, name: str, rows: int) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        with self.tracer.start_as_current_span(name, attributes={"rows": rows}):
            yield

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        with self._model_span("image_encoder", len(pixels)):
            (features,) = self._image.run(
                [self.manifest.image_encoder.output], self.image_feed(pixels)
            )
        return features

    def encode_texts(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        with self._model_span("text_encoder", len(token_ids)):
            (embeddings,) = self._text.run(
                [self.manifest.text_encoder.output], self.text_feed(token_ids)
            )
        return embeddings

    def text_features(self, items: Sequence[PreparedItem]) -> np.ndarray:
        """Text embeddings for items that all have a text: cached ones reused, each distinct
        miss encoded once."""
        found: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        for item in items:
            if item.text is None or item.token_ids is None:
                raise ValueError("text_features needs items with a text")
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
        return np.stack([found[item.text] for item in items if item.text is not None])
