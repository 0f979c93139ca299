"""The inference pipeline: prepare one item (decode + tokenise), then run a batch of items.

``prepare`` is the CPU-bound per-item part (of an item the request policy has checked) and runs
before anything is queued, so only well-formed arrays ever reach ``run``. ``run`` takes a batch
(the dynamic batcher gathers it) through image encoder, text encoder and fusion head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from app.bundle.manifest import Manifest, Modality
from app.core.encoder_pipeline import EncoderPipeline, PreparedItem, Session
from app.core.text_cache import TextEmbeddingCache
from app.errors import ModalityRequired
from app.preprocess.image import ImageDecoder
from app.preprocess.text import TextTokenizer


class DeviceFeatures(Protocol):
    """An output kept on the session's device (``onnxruntime.OrtValue``)."""

    def shape(self) -> list[int]: ...


@runtime_checkable
class KeepingSession(Protocol):
    """A session that can keep an output on its device for the next model
    (``app.core.bound_session.BoundSession``)."""

    def run(self, output_names: list[str] | None, input_feed: Any) -> list[np.ndarray]: ...

    def run_kept(self, output_name: str, input_feed: Any) -> Any: ...


@dataclass(frozen=True)
class ItemResult:
    """One item's answer from ``Pipeline.run_items``: its class probabilities and, for an item
    that asked to be explained, the probabilities the head gives with the image, then the
    text, replaced by its learned null embedding (the same features otherwise)."""

    probabilities: np.ndarray
    without_image: np.ndarray | None = None
    without_text: np.ndarray | None = None


def softmax(
    logits: np.ndarray, temperature: float = 1.0, dtype: type[np.floating] = np.float32
) -> np.ndarray:
    """Softmax over the last axis of ``logits / temperature``, as ``dtype`` (float32 when
    serving; the training tools ask for float64 to fit temperatures)."""
    scaled = logits / temperature if temperature != 1.0 else logits
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True), dtype=dtype)


def sigmoid(
    logits: np.ndarray, temperature: float = 1.0, dtype: type[np.floating] = np.float32
) -> np.ndarray:
    """Elementwise logistic of ``logits / temperature``, as ``dtype``: a multilabel head's
    independent per-label probabilities. Computed in float64 so that large logits of
    either sign neither overflow nor lose the tail."""
    scaled = np.asarray(logits, dtype=np.float64)
    if temperature != 1.0:
        scaled = scaled / temperature
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * scaled)), dtype=dtype)


class Pipeline(EncoderPipeline):
    """Image encoder + text encoder + fusion head, as one bundle describes them."""

    manifest: Manifest

    def __init__(
        self,
        manifest: Manifest,
        image_session: Session,
        text_session: Session,
        head_session: Session,
        decoder: ImageDecoder,
        tokenizer: TextTokenizer,
        text_cache: TextEmbeddingCache | None = None,
    ) -> None:
        super().__init__(manifest, image_session, text_session, decoder, tokenizer, text_cache)
        self.manifest = manifest
        self._head = head_session
        # Image features stay on the device between the image encoder and the head when both
        # sessions can keep and take device outputs (IO binding): see ``_features``.
        self._keeping: KeepingSession | None = (
            image_session
            if isinstance(image_session, KeepingSession)
            and isinstance(head_session, KeepingSession)
            else None
        )

    @property
    def io_bound(self) -> bool:
        """Whether the sessions run through IO binding (``app.core.bound_session``)."""
        return isinstance(self._head, KeepingSession)

    def accepts_missing(self, modality: Modality) -> bool:
        """Whether requests without ``modality`` can be answered by this bundle's head."""
        return self.manifest.fusion_head.accepts_missing(modality)

    def head_scores(
        self,
        image_features: np.ndarray | DeviceFeatures,
        text_features: np.ndarray,
        image_present: np.ndarray | None = None,
        text_present: np.ndarray | None = None,
    ) -> np.ndarray:
        """The fusion head's raw output [N, classes] (logits or probabilities, per manifest).

        ``image_present``/``text_present`` are boolean [N] (default: all present); a missing
        row's features are ignored by the head, which uses what it learned for absence.
        ``image_features`` may be kept on the device by the image encoder (``_features``).
        """
        spec = self.manifest.fusion_head
        feed: dict[str, Any] = {
            spec.image_input: (
                image_features.astype(np.float32, copy=False)
                if isinstance(image_features, np.ndarray)
                else image_features
            ),
            spec.text_input: text_features.astype(np.float32, copy=False),
        }
        rows = len(text_features)
        for name, present, modality in (
            (spec.image_present, image_present, "image"),
            (spec.text_present, text_present, "text"),
        ):
            if name is not None:
                mask = np.ones(rows, dtype=bool) if present is None else present
                feed[name] = mask.astype(np.float32).reshape(rows, 1)
            elif present is not None and not present.all():
                raise ModalityRequired(f"this bundle's fusion head needs the {modality}")
        with self._model_span("fusion_head", rows):
            (scores,) = self._head.run([spec.output], feed)
        return np.asarray(scores, dtype=np.float32)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from the head's output (``head_scores``): over the classes
        (softmax) for a multiclass bundle, per label (sigmoid) for a multilabel one."""
        spec = self.manifest.fusion_head
        if spec.output_type == "logits":
            if self.manifest.multilabel:
                return sigmoid(scores, spec.temperature)
            return softmax(scores, spec.temperature)
        return np.asarray(scores, dtype=np.float32)

    def fuse(self, image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """Class probabilities [N, classes] from the two embeddings (both present)."""
        return self.probabilities(self.head_scores(image_features, text_features))

    def run(self, items: Sequence[PreparedItem]) -> np.ndarray:
        """Class probabilities for a batch of prepared items, one row per item, in order
        (explanations are left out: ``run_items`` computes them).

        Items without an image or a text get zero features and a 0 presence flag for it; each
        encoder runs only on the items that have its modality."""
        return self._classify(items, self._features(items, keep=True))

    def run_items(self, items: Sequence[PreparedItem]) -> list[ItemResult]:
        """``run``, one ``ItemResult`` per item; the items with ``explain`` also get their
        probabilities without the image and without the text. Those come from one more call
        of the fusion head for the whole batch, on the features already computed: no encoder
        runs again."""
        asked = [i for i, item in enumerate(items) if item.explain]
        features = self._features(items, keep=not asked)
        probabilities = self._classify(items, features)
        if not asked:
            return [ItemResult(row) for row in probabilities]
        image_features = features[0]
        assert isinstance(image_features, np.ndarray)  # not kept on the device: see above
        without_image, without_text = self._ablate(image_features[asked], features[1][asked])
        results = [ItemResult(row) for row in probabilities]
        for row, i in enumerate(asked):
            results[i] = ItemResult(probabilities[i], without_image[row], without_text[row])
        return results

    def _features(
        self, items: Sequence[PreparedItem], keep: bool = False
    ) -> tuple[np.ndarray | DeviceFeatures, np.ndarray, np.ndarray, np.ndarray]:
        """Image features, text features, image present, text present; one row per item.

        With ``keep``, when every item has an image and the sessions allow it, the image
        features stay on the device for the head (IO binding): the pixels are copied there
        once and nothing comes back until the probabilities. Text features always come back
        to the host: the text cache keeps them there, and they are small (one embedding per
        distinct text). Missing images need zero rows and explanations need the features on
        the host, so those batches take the host path."""
        image_present = np.asarray([item.pixels is not None for item in items], dtype=bool)
        text_present = np.asarray([item.token_ids is not None for item in items], dtype=bool)
        image_features: np.ndarray | DeviceFeatures
        if keep and self._keeping is not None and image_present.all():
            pixels = np.stack([item.pixels for item in items if item.pixels is not None])
            output = self.manifest.image_encoder.output
            with self._model_span("image_encoder", len(pixels)):
                image_features = self._keeping.run_kept(output, self.image_feed(pixels))
        else:
            image_features = self._rows(
                image_present,
                self.manifest.image_encoder.embedding_dim,
                lambda: self.encode_images(
                    np.stack([item.pixels for item in items if item.pixels is not None])
                ),
            )
        text_features = self._rows(
            text_present,
            self.manifest.text_encoder.embedding_dim,
            lambda: self.text_features([item for item in items if item.token_ids is not None]),
        )
        return image_features, text_features, image_present, text_present

    def _classify(
        self,
        items: Sequence[PreparedItem],
        features: tuple[np.ndarray | DeviceFeatures, np.ndarray, np.ndarray, np.ndarray],
    ) -> np.ndarray:
        probabilities = self.probabilities(self.head_scores(*features))
        if probabilities.shape != (len(items), len(self.manifest.labels)):
            raise RuntimeError(
                f"fusion head returned shape {probabilities.shape} for {len(items)} items and "
                f"{len(self.manifest.labels)} labels"
            )
        return probabilities

    def _ablate(
        self, image_features: np.ndarray, text_features: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities without the image and without the text for k items that have both:
        one head call on 2k rows, [all without the image ; all without the text]. The left-out
        rows get zero features, exactly as a request that did not send that modality."""
        k = len(image_features)
        present = np.arange(2 * k) >= k  # image: absent in the first k rows
        images = np.concatenate([np.zeros_like(image_features), image_features])
        texts = np.concatenate([text_features, np.zeros_like(text_features)])
        probabilities = self.probabilities(self.head_scores(images, texts, present, ~present))
        return probabilities[:k], probabilities[k:]

    @staticmethod
    def _rows(present: np.ndarray, width: int, encode: Callable[[], np.ndarray]) -> np.ndarray:
        """Features for the present rows (from ``encode``), zeros for the others."""
        if present.all():
            return encode()
        features = np.zeros((len(present), width), dtype=np.float32)
        if present.any():
            features[present] = encode()
        return features
