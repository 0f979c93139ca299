"""Classification and calibration metrics for ``evaluate``: numpy in, numpy or floats out.

Classes are integer indices into a label list. Macro averages are unweighted means over *every*
label in that list, including classes absent from the data (their scores are 0), so reports on
different subsets of one dataset are comparable. Undefined ratios (no predictions of a class,
no examples of it) are 0, never a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from app.core.pipeline import softmax

DEFAULT_BINS = 15
# Fitted temperatures are searched in [1/20, 20]: wide enough for any sane head, and it keeps
# the optimiser away from degenerate solutions (T -> 0 or infinity) on separable data.
TEMPERATURE_BOUNDS = (0.05, 20.0)
_PROBABILITY_SUM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class, and its number of true examples."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    """Accuracy, macro averages, per-class scores and the confusion matrix.

    ``confusion[i, j]`` counts examples of class ``i`` predicted as class ``j``.
    """

    labels: tuple[str, ...]
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: tuple[ClassScores, ...]
    confusion: np.ndarray


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin ``(lower, upper]``; mean confidence and accuracy are None if empty."""

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> ClassificationReport:
    """Scores of predicted class indices against true ones, over all of ``labels``."""
    true, pred = _class_indices(y_true, len(labels)), _class_indices(y_pred, len(labels))
    if true.shape != pred.shape:
        raise ValueError(f"{true.size} true labels but {pred.size} predictions")
    classes = np.arange(len(labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=classes, average=None, zero_division=0.0
    )
    per_class = tuple(
        ClassScores(label, float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    )
    return ClassificationReport(
        labels=tuple(labels),
        accuracy=float(np.mean(true == pred)),
        macro_precision=float(np.mean(precision)),
        macro_recall=float(np.mean(recall)),
        macro_f1=float(np.mean(f1)),
        per_class=per_class,
        confusion=confusion_matrix(true, pred, labels=classes),
    )


def reliability_bins(
    probabilities: np.ndarray, y_true: np.ndarray, bins: int = DEFAULT_BINS
) -> tuple[ReliabilityBin, ...]:
    """Reliability-diagram data: ``bins`` equal-width bins of top-class confidence over [0, 1].

    Bin ``i`` holds confidences in ``(i / bins, (i + 1) / bins]`` (the first also holds 0).
    """
    probs = _probabilities(probabilities)
    true = _class_indices(y_true, probs.shape[1])
    if true.size != probs.shape[0]:
        raise ValueError(f"{true.size} labels for {probs.shape[0]} rows of probabilities")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == true
    return tuple(
        ReliabilityBin(lower, upper, count, confidence=mean_score, accuracy=mean_outcome)
        for lower, upper, count, mean_score, mean_outcome in equal_width_bins(
            confidence, correct, bins
        )
    )


def equal_width_bins(
    scores: np.ndarray, outcomes: np.ndarray, bins: int
) -> list[tuple[float, float, int, float | None, float | None]]:
    """``bins`` equal-width bins ``(lower, upper]`` of ``scores`` in [0, 1] (the first also
    takes 0): each bin's bounds, count, mean score and mean outcome (None when empty). The
    binning of every reliability diagram and calibration error here."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], scores, side="left")
    result: list[tuple[float, float, int, float | None, float | None]] = []
    for i in range(bins):
        members = which == i
        count = int(members.sum())
        result.append(
            (
                float(edges[i]),
                float(edges[i + 1]),
                count,
                float(scores[members].mean()) if count else None,
                float(outcomes[members].mean()) if count else None,
            )
        )
    return result


def expected_calibration_error(
    probabilities: np.ndarray, y_true: np.ndarray, bins: int = DEFAULT_BINS
) -> float:
    """ECE: sum over bins of ``|accuracy - mean confidence|`` weighted by the bin's fraction."""
    table = reliability_bins(probabilities, y_true, bins)
    total = sum(b.count for b in table)
    return float(
        sum(
            b.count / total * abs(b.accuracy - b.confidence)
            for b in table
            if b.accuracy is not None and b.confidence is not None
        )
    )


def calibrated_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` in float64: the service's own softmax
    (``app.core.pipeline.softmax``), after checking the logits and the temperature."""
    return softmax(_logits(logits), _temperature(temperature), dtype=np.float64)


def negative_log_likelihood(
    logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0
) -> float:
    """Mean cross-entropy of ``softmax(logits / temperature)`` against the true classes."""
    scaled = _logits(logits) / _temperature(temperature)
    true = _class_indices(y_true, scaled.shape[1])
    if true.size != scaled.shape[0]:
        raise ValueError(f"{true.size} labels for {scaled.shape[0]} rows of logits")
    peak = scaled.max(axis=1)
    log_norm = peak + np.log(np.exp(scaled - peak[:, None]).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(true.size), true]))


def fit_temperature(
    logits: np.ndarray,
    y_true: np.ndarray,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """The temperature in ``bounds`` minimising the NLL of ``softmax(logits / T)``.

    Fit it on validation logits, never on the data it is evaluated on. The search runs over
    ``log T`` (bounded Brent), where the NLL is smooth and the scale symmetric.
    """
    values, true = _logits(logits), np.asarray(y_true)
    return minimise_over_temperature(lambda t: negative_log_likelihood(values, true, t), bounds)


def minimise_over_temperature(
    loss: Callable[[float], float], bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float:
    """The temperature ``T`` in ``bounds`` minimising ``loss(T)``: bounded Brent over
    ``log T`` (to 1e-6), where a calibration loss is smooth and the scale symmetric. The
    search of every temperature fit (softmax here, sigmoid in ``train-head``)."""
    lower, upper = bounds
    if not 0 < lower < upper or not math.isfinite(upper):
        raise ValueError(f"temperature bounds must satisfy 0 < lower < upper, got {bounds}")
    result = minimize_scalar(
        lambda log_t: loss(math.exp(log_t)),
        bounds=(math.log(lower), math.log(upper)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    if not result.success:
        raise RuntimeError(f"temperature fit did not converge: {result.message}")
    return math.exp(float(result.x))


def _class_indices(values: np.ndarray, classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"class indices must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"class indices must be integers, got {array.dtype}")
    if array.min() < 0 or array.max() >= classes:
        raise ValueError(f"class indices must be in [0, {classes})")
    return array.astype(np.int64)


def _matrix(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] < 2:
        raise ValueError(f"{what} must have shape [examples, classes >= 2], got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite")
    return array


def _logits(values: np.ndarray) -> np.ndarray:
    return _matrix(values, "logits")


def _probabilities(values: np.ndarray) -> np.ndarray:
    array = _matrix(values, "probabilities")
    if array.min() < 0 or array.max() > 1:
        raise ValueError("probabilities must be in [0, 1]")
    if np.abs(array.sum(axis=1) - 1).max() > _PROBABILITY_SUM_TOLERANCE:
        raise ValueError("each row of probabilities must sum to 1")
    return array


def _temperature(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a positive finite number, got {value}")
    return value
