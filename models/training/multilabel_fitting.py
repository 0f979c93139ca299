"""Multilabel loss weights, temperature and decision thresholds for ``train-head --task
multilabel``: numpy in, numpy or floats out.

Positive weights. Each label's term of the BCE-with-logits loss weighs its positives by
``pos_weight = n_negative / n_positive`` over the training split, so a rare label's few
positives count as much as its many negatives. The weight is clipped into
``[1 / MAX_POS_WEIGHT, MAX_POS_WEIGHT]`` (1/100 to 100): beyond 100 a handful of positives
dominates every gradient step and the head overshoots on them, and a label on every training
row would otherwise get weight 0, i.e. no training signal at all. A label with no positive in
the training split cannot be learnt and is refused (``TrainingDataError``).

Temperature. One temperature ``T`` for all labels, fitted on validation logits by minimising
the mean (unweighted) binary cross-entropy of ``sigmoid(logits / T)``
(``models.evaluation.multilabel_calibration.binary_cross_entropy_from_logits``, which with the
positive weights is also the training loss), searched over ``log T`` in ``TEMPERATURE_BOUNDS``
by ``models.evaluation.classification_metrics.minimise_over_temperature``, as the softmax's
``fit_temperature`` is. The probabilities at ``T`` are the service's own
``app.core.pipeline.sigmoid``.

Thresholds. Tuned per label on validation probabilities *after* temperature scaling. A label
is predicted when its probability is at or above its threshold. Rule, for each label: the
candidates are the midpoints between consecutive distinct validation probabilities of that
label, clipped into ``THRESHOLD_RANGE`` ([0.01, 0.99], so every threshold is valid in a
manifest); the threshold is the candidate with the highest F1 of that label on validation;
ties go to the candidate closest to 0.5, then to the lower one. A label with no validation
positive (F1 is 0 whatever the threshold) or a single distinct probability (no midpoint)
keeps ``DEFAULT_THRESHOLD`` 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.evaluation.classification_metrics import (
    TEMPERATURE_BOUNDS,
    minimise_over_temperature,
)
from models.evaluation.multilabel_calibration import binary_cross_entropy_from_logits
from models.training.splits import TrainingDataError

MAX_POS_WEIGHT = 100.0
THRESHOLD_RANGE = (0.01, 0.99)
DEFAULT_THRESHOLD = 0.5
# The threshold rule in one sentence, for the training report and the model card.
THRESHOLD_RULE = (
    "per label, on validation probabilities after temperature scaling: the midpoint between "
    "consecutive distinct probabilities, clipped into [0.01, 0.99], with the highest F1 of that "
    "label (ties: closest to 0.5, then lower); 0.5 for a label with no validation positive; a "
    "label is predicted when its probability is at or above its threshold"
)


def positive_weights(targets: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Per label ``n_negative / n_positive`` over ``targets`` (multi-hot [N, labels]), clipped
    into [1/MAX_POS_WEIGHT, MAX_POS_WEIGHT], as float32; raises ``TrainingDataError`` for a
    label without positives."""
    matrix = _targets(targets)
    if matrix.shape[1] != len(labels):
        raise ValueError(f"{matrix.shape[1]} target columns for {len(labels)} labels")
    positives = matrix.sum(axis=0)
    for label, count in zip(labels, positives, strict=True):
        if count == 0:
            raise TrainingDataError(
                f"label {label!r} has no positive training example; every label needs at "
                "least one (or leave it out of --labels)"
            )
    ratio = (len(matrix) - positives) / positives
    weights: np.ndarray = np.clip(ratio, 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT).astype(np.float32)
    return weights


def fit_sigmoid_temperature(
    logits: np.ndarray,
    targets: np.ndarray,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """The temperature in ``bounds`` minimising the mean BCE of ``sigmoid(logits / T)``."""
    values, truth = _logits(logits), _targets(targets)
    return minimise_over_temperature(
        lambda t: binary_cross_entropy_from_logits(values, truth, t), bounds
    )


def tune_thresholds(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each label's threshold by the module's rule (float64 [labels])."""
    scores, truth = _probabilities(probabilities), _targets(targets)
    if truth.shape != scores.shape:
        raise ValueError(f"targets of shape {truth.shape} for {scores.shape} probabilities")
    return np.asarray(
        [tune_threshold(scores[:, j], truth[:, j]) for j in range(scores.shape[1])],
        dtype=np.float64,
    )


def tune_threshold(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """One label's threshold: see the module docstring."""
    positives = int(targets.sum())
    distinct = np.unique(probabilities)  # sorted
    if positives == 0 or len(distinct) < 2:
        return DEFAULT_THRESHOLD
    candidates = np.clip((distinct[:-1] + distinct[1:]) / 2.0, *THRESHOLD_RANGE)
    f1 = threshold_f1(probabilities, targets, candidates)
    best = candidates[f1 == f1.max()]
    # Closest to 0.5 first, then the lower: lexsort sorts by its last key first.
    pick = np.lexsort((best, np.abs(best - DEFAULT_THRESHOLD)))[0]
    return float(best[pick])


def threshold_f1(
    probabilities: np.ndarray, targets: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """One label's F1 when predicted at ``probabilities >= t``, for each ``t`` in
    ``thresholds``; one sort, not one pass per threshold (validation sets can be large)."""
    order = np.argsort(probabilities, kind="stable")
    ranked, truth = probabilities[order], targets[order].astype(np.int64)
    # positives_from[i]: positives among the rows ranked i and above.
    positives_from = np.concatenate([np.cumsum(truth[::-1])[::-1], [0]])
    start = np.searchsorted(ranked, thresholds, side="left")
    predicted = len(ranked) - start
    true_positives = positives_from[start]
    denominator = predicted + int(truth.sum())
    f1: np.ndarray = np.where(
        denominator > 0, 2.0 * true_positives / np.maximum(denominator, 1), 0.0
    )
    return f1


def _logits(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"logits must have shape [examples, labels], got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("logits must be finite")
    return array


def _probabilities(values: np.ndarray) -> np.ndarray:
    array = _logits(values)
    if array.min() < 0 or array.max() > 1:
        raise ValueError("probabilities must be in [0, 1]")
    return array


def _targets(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"targets must be multi-hot [examples, labels], got {array.shape}")
    if not np.all((array == 0) | (array == 1)):
        raise ValueError("targets must be 0 or 1")
    return array
