"""Pick and write the tags bundle's example inputs (``models/samples/tags/``).

For each class in ``samples.SAMPLE_CLASSES`` the first Fashion-MNIST *test* example of that
class is taken whose title states at least one attribute tag and whose tags the bundle
predicts exactly (the tag set at the thresholds equals the true one). ``tags.json`` records
the title, the true tags and each tag's served probability, recomputed end to end from the PNG
through the service's own pipeline, so clients and tests can expect those numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from app.core.classification import predicted_indices
from models.data.dataset import Example, load_dataset
from models.data.features import FeatureExtractor, load_engine
from models.recipes.fashion_mnist.attribute_tags import ATTRIBUTE_TAGS, TAGS
from models.recipes.fashion_mnist.raw_data import LABELS, load_split
from models.recipes.fashion_mnist.samples import SAMPLE_CLASSES, file_name
from models.recipes.fashion_mnist.tagged_titles import stated_attributes

SAMPLES_FILE = "tags.json"
_CONSISTENCY_TOLERANCE = 1e-4


def choose(
    examples: tuple[Example, ...], classes: np.ndarray, predicted: list[list[int]], label: str
) -> int:
    """Position of the first qualifying test example of class ``label``."""
    index = LABELS.index(label)
    for position, example in enumerate(examples):
        if classes[int(example.image.stem)] != index:
            continue
        exact = [TAGS[i] for i in sorted(predicted[position])] == sorted(
            example.tags, key=TAGS.index
        )
        if exact and stated_attributes(example.text) & set(ATTRIBUTE_TAGS):
            return position
    raise RuntimeError(f"no exactly tagged test example of {label} with a stated attribute")


def write_tag_samples(
    samples_dir: Path, bundle_dir: Path, dataset_path: Path, data_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Write the sample PNGs and ``tags.json`` under ``samples_dir / "tags"``; the entries."""
    test = load_dataset(dataset_path, labels=TAGS, task="multilabel").split("test")
    _, classes = load_split("t10k") if data_dir is None else load_split("t10k", data_dir)
    engine = load_engine(bundle_dir)
    pipeline, manifest = engine.pipeline, engine.bundle.manifest
    features = FeatureExtractor(engine, progress=False).extract(test)
    probabilities = pipeline.probabilities(pipeline.head_scores(features.image, features.text))
    predicted = [predicted_indices(row, manifest) for row in probabilities]
    out = samples_dir / "tags"
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for label in SAMPLE_CLASSES:
        position = choose(test, classes, predicted, label)
        example = test[position]
        item = engine.prepare(example.image.read_bytes(), example.text)
        served = pipeline.run([item])[0]
        if np.abs(served - probabilities[position]).max() > _CONSISTENCY_TOLERANCE:
            raise RuntimeError(f"{label}: end-to-end probabilities disagree with the batch ones")
        shutil.copyfile(example.image, out / file_name(label))
        entries.append(
            {
                "file": file_name(label),
                "text": example.text,
                "class": label,
                "tags": sorted(example.tags, key=TAGS.index),
                "test_index": int(example.image.stem),
                "probabilities": {
                    tag: round(float(p), 6) for tag, p in zip(TAGS, served, strict=True)
                },
            }
        )
    (out / SAMPLES_FILE).write_text(json.dumps(entries, indent=2) + "\n")
    print(f"- wrote {len(entries)} tag samples to {out}", flush=True)
    return entries
