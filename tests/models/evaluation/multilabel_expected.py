"""Expected values for the multilabel ``evaluate`` tests, computed without the code under test:
the pipeline's own probabilities (``Pipeline.fuse``) on the features ``FeatureExtractor`` gives,
the service's threshold rule, scikit-learn's scores and an ECE written out here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss

from models.data.dataset import load_dataset
from models.data.features import FeatureExtractor, load_engine
from tests.support.tiny_bundle import TAG_THRESHOLDS, TAGS

TEMPERATURE = 2.0


def expected_outputs(bundle_dir: Path, data: Path) -> dict[str, Any]:
    """Label sets of the split evaluate picks (test, else all), their features, and the
    pipeline's own probabilities for them."""
    dataset = load_dataset(data, labels=TAGS, task="multilabel")
    test = dataset.split("test") or dataset.examples
    engine = load_engine(bundle_dir, threads=1)
    features = FeatureExtractor(engine, None, progress=False).extract(test)
    served = engine.pipeline.fuse(features.image, features.text)
    return {
        "y": dataset.label_matrix(test).astype(np.int64),
        "image": features.image,
        "text": features.text,
        "served": served,
        # What the service predicts: each float32 probability against its threshold.
        "predicted": np.array(
            [[row[i] >= TAG_THRESHOLDS[i] for i in range(len(TAGS))] for row in served]
        ).astype(np.int64),
    }


def sklearn_scores(
    y: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray
) -> dict[str, Any]:
    """The headline scores, by scikit-learn (mAP over the labels with positives)."""
    positives = [i for i in range(y.shape[1]) if y[:, i].any()]
    return {
        "micro_f1": f1_score(y, predicted, average="micro", zero_division=0),
        "macro_f1": f1_score(y, predicted, average="macro", zero_division=0),
        "samples_f1": f1_score(y, predicted, average="samples", zero_division=1),
        "mean_average_precision": np.mean(
            [average_precision_score(y[:, i], probabilities[:, i]) for i in positives]
        ),
        "subset_accuracy": accuracy_score(y, predicted),
        "hamming_loss": hamming_loss(y, predicted),
    }


def ece_by_hand(probabilities: np.ndarray, truth: np.ndarray, bins: int) -> float:
    """One label's ECE over bins ``(k/bins, (k+1)/bins]``, written out independently."""
    index = np.clip(np.ceil(probabilities * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            gap = abs(truth[members].mean() - probabilities[members].mean())
            total += members.sum() / truth.size * gap
    return total
