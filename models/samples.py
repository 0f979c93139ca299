"""Pick and write the example inputs in ``models/samples/`` (test images + fixed texts).

For each class in ``SAMPLE_CLASSES`` the first Fashion-MNIST *test* image is taken whose
generated text names its true group (not one of the 10% noisy texts) and which the fused head
classifies correctly with probability >= ``MIN_PROBABILITY``. The image is written as the
dataset's own 28x28 greyscale PNG; ``samples.json`` records the text, label, test index and
the fused probability of the true label, recomputed end to end from the PNG file through the
bundle's ONNX models, so clients and tests can expect that number from the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.bundle import load_bundle
from app.bundle.manifest import ImageEncoder, TextEncoder
from models import build_default_bundle as bundle
from models import export_text_encoder as text_export
from models._export_utils import cpu_session
from models.fashion_mnist import LABELS, png_bytes
from models.fashion_texts import GROUP_OF_LABEL, group_named_in
from models.reference import reference_image_tensor

SAMPLE_CLASSES = ("T-shirt/top", "Trouser", "Dress", "Sneaker", "Bag", "Ankle boot")
MIN_PROBABILITY = 0.95
# The end-to-end probability must match the one from cached embeddings: same models, same
# preprocessing, only batch composition differs.
_CONSISTENCY_TOLERANCE = 1e-4


class _TestSplit(Protocol):
    indices: np.ndarray
    labels: np.ndarray
    texts: list[str]
    image: np.ndarray
    text: np.ndarray


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def file_name(label: str) -> str:
    """``"T-shirt/top"`` -> ``"t_shirt_top.png"``."""
    return "".join(c if c.isalnum() else "_" for c in label.lower()) + ".png"


def head_probabilities(bundle_dir: Path, image: np.ndarray, text: np.ndarray) -> np.ndarray:
    session = cpu_session(bundle_dir / bundle.FUSION_HEAD_FILE)
    feeds = {bundle.HEAD_IMAGE_INPUT: image, bundle.HEAD_TEXT_INPUT: text}
    return _softmax(session.run([bundle.HEAD_OUTPUT], feeds)[0])


def end_to_end_probabilities(bundle_dir: Path, image_bytes: bytes, text: str) -> np.ndarray:
    """Class probabilities for one (image, text) pair, driven by the bundle's manifest."""
    manifest = load_bundle(bundle_dir).manifest
    features = _image_features(bundle_dir, manifest.image_encoder, image_bytes)
    embedding = _text_embedding(bundle_dir, manifest.text_encoder, text)
    head = manifest.fusion_head
    logits = cpu_session(bundle_dir / head.file).run(
        [head.output], {head.image_input: features, head.text_input: embedding}
    )[0]
    return _softmax(logits)[0]


def _image_features(bundle_dir: Path, spec: ImageEncoder, image_bytes: bytes) -> np.ndarray:
    pixels = reference_image_tensor(image_bytes, spec.preprocess)[None]
    return cpu_session(bundle_dir / spec.file).run([spec.output], {spec.input: pixels})[0]


def _text_embedding(bundle_dir: Path, spec: TextEncoder, text: str) -> np.ndarray:
    tokenizer = text_export.load_tokenizer(bundle_dir / spec.tokenizer.file)
    tokens = text_export.tokenize(tokenizer, [text])
    feeds = {spec.input_ids: tokens["input_ids"]}
    if spec.attention_mask is not None:
        feeds[spec.attention_mask] = tokens["attention_mask"]
    return cpu_session(bundle_dir / spec.file).run([spec.output], feeds)[0]


def choose(test: _TestSplit, probabilities: np.ndarray, label_index: int) -> int:
    """Position (in ``test``) of the first qualifying example of ``label_index``."""
    for position in np.flatnonzero(test.labels == label_index):
        honest_text = group_named_in(test.texts[position]) == GROUP_OF_LABEL[label_index]
        confident = probabilities[position].argmax() == label_index and (
            probabilities[position, label_index] >= MIN_PROBABILITY
        )
        if honest_text and confident:
            return int(position)
    raise RuntimeError(f"no confident, honestly described test example of {LABELS[label_index]}")


def write_samples(
    samples_dir: Path, bundle_dir: Path, test: _TestSplit, test_images: np.ndarray
) -> list[dict[str, Any]]:
    """Write the sample PNGs and ``samples.json``; return the JSON entries."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    probabilities = head_probabilities(bundle_dir, test.image, test.text)
    entries = []
    for label in SAMPLE_CLASSES:
        label_index = LABELS.index(label)
        position = choose(test, probabilities, label_index)
        test_index = int(test.indices[position])
        image_bytes = png_bytes(test_images[test_index])
        (samples_dir / file_name(label)).write_bytes(image_bytes)
        end_to_end = float(
            end_to_end_probabilities(bundle_dir, image_bytes, test.texts[position])[label_index]
        )
        if abs(end_to_end - probabilities[position, label_index]) > _CONSISTENCY_TOLERANCE:
            raise RuntimeError(f"{label}: end-to-end probability disagrees with the cached one")
        entries.append(
            {
                "file": file_name(label),
                "text": test.texts[position],
                "label": label,
                "label_index": label_index,
                "test_index": test_index,
                "fused_probability": round(end_to_end, 6),
            }
        )
    (samples_dir / "samples.json").write_text(json.dumps(entries, indent=2) + "\n")
    print(f"- wrote {len(entries)} samples to {samples_dir}", flush=True)
    return entries
