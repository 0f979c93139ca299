"""Pick and write the example inputs in ``models/samples/`` (test images + their texts).

For each class in ``SAMPLE_CLASSES`` the first Fashion-MNIST *test* example is taken whose
generated text names its true group (not one of the noisy texts) and which the default bundle
classifies correctly with probability >= ``MIN_PROBABILITY``. The image is the dataset's own
28x28 greyscale PNG; ``samples.json`` records the text, label, test index and the served
probability of the true label, recomputed end to end from the PNG file through the service's
own pipeline, so clients and tests can expect that number from the service.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from models.data.dataset import Example, load_dataset
from models.data.features import FeatureExtractor, load_engine
from models.recipes.fashion_mnist.raw_data import LABELS
from models.recipes.fashion_mnist.titles import GROUP_OF_LABEL, group_named_in

SAMPLE_CLASSES = ("T-shirt/top", "Trouser", "Dress", "Sneaker", "Bag", "Ankle boot")
MIN_PROBABILITY = 0.95
# The end-to-end probability (one request, batch of one) must match the one computed from the
# cached features of the whole split: same models, same preprocessing.
_CONSISTENCY_TOLERANCE = 1e-4


def file_name(label: str) -> str:
    """``"T-shirt/top"`` -> ``"t_shirt_top.png"``."""
    return "".join(c if c.isalnum() else "_" for c in label.lower()) + ".png"


def choose(examples: tuple[Example, ...], probabilities: np.ndarray, label: str) -> int:
    """Position of the first qualifying test example of ``label``."""
    index = LABELS.index(label)
    for position, example in enumerate(examples):
        if example.label != label:
            continue
        honest_text = group_named_in(example.text) == GROUP_OF_LABEL[index]
        row = probabilities[position]
        if honest_text and row.argmax() == index and row[index] >= MIN_PROBABILITY:
            return position
    raise RuntimeError(f"no confident, honestly described test example of {label}")


def write_samples(samples_dir: Path, bundle_dir: Path, dataset_path: Path) -> list[dict[str, Any]]:
    """Write the sample PNGs and ``samples.json``; return the JSON entries."""
    test = load_dataset(dataset_path, labels=LABELS).split("test")
    engine = load_engine(bundle_dir)
    pipeline = engine.pipeline
    features = FeatureExtractor(engine, progress=False).extract(test)
    probabilities = pipeline.probabilities(pipeline.head_scores(features.image, features.text))
    samples_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for label in SAMPLE_CLASSES:
        position = choose(test, probabilities, label)
        example, index = test[position], LABELS.index(label)
        item = engine.prepare(example.image.read_bytes(), example.text)
        served = float(pipeline.run([item])[0][index])
        expected = float(probabilities[position, index])
        if abs(served - expected) > _CONSISTENCY_TOLERANCE:
            raise RuntimeError(f"{label}: end-to-end probability disagrees with the batch one")
        shutil.copyfile(example.image, samples_dir / file_name(label))
        entries.append(
            {
                "file": file_name(label),
                "text": example.text,
                "label": label,
                "label_index": index,
                "test_index": int(example.image.stem),
                "fused_probability": round(served, 6),
            }
        )
    (samples_dir / "samples.json").write_text(json.dumps(entries, indent=2) + "\n")
    print(f"- wrote {len(entries)} samples to {samples_dir}", flush=True)
    return entries
