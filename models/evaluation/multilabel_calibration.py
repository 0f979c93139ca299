"""Per-label calibration of a multilabel head's sigmoid probabilities, for ``evaluate``.

Each label is a binary problem: its probability should equal the frequency of the label among
the examples given that probability. Per label, the probabilities fall into ``bins``
equal-width bins over [0, 1], bin ``i`` holding ``(i / bins, (i + 1) / bins]`` (the first also
holds 0), the same bins as ``classification_metrics.reliability_bins``; the label's expected
calibration error is the sum over bins of ``|positive rate - mean probability|`` weighted by
the bin's share of the examples. Unlike the multiclass ECE (top-class confidence against
accuracy) this bins the probability itself, so low probabilities of absent labels count too:
a multilabel head is mostly answering "no" and must be calibrated there as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.evaluation.classification_metrics import equal_width_bins


@dataclass(frozen=True)
class ProbabilityBin:
    """One bin ``(lower, upper]`` of a label's probabilities; the mean probability and the share
    of positives among its examples are None when it is empty."""

    lower: float
    upper: float
    count: int
    mean_probability: float | None
    positive_rate: float | None


@dataclass(frozen=True)
class LabelCalibration:
    """One label's expected calibration error and its reliability bins."""

    label: str
    ece: float
    bins: tuple[ProbabilityBin, ...]


def probability_bins(
    probabilities: np.ndarray, truth: np.ndarray, bins: int
) -> tuple[ProbabilityBin, ...]:
    """Reliability-diagram data of one label: ``bins`` equal-width bins of its probability."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    probs, positive = _column(probabilities, truth)
    return tuple(
        ProbabilityBin(lower, upper, count, mean_probability=mean, positive_rate=rate)
        for lower, upper, count, mean, rate in equal_width_bins(probs, positive, bins)
    )


def label_calibration(
    probabilities: np.ndarray, y_true: np.ndarray, labels: Sequence[str], bins: int
) -> tuple[LabelCalibration, ...]:
    """Every label's ECE and bins, from ``[examples, labels]`` probabilities and truth."""
    probs, truth = np.asarray(probabilities), np.asarray(y_true)
    if probs.ndim != 2 or probs.shape != truth.shape or probs.shape[1] != len(labels):
        raise ValueError(
            f"probabilities {probs.shape} and truth {truth.shape} must both be "
            f"[examples, {len(labels)} labels]"
        )
    result = []
    for i, label in enumerate(labels):
        table = probability_bins(probs[:, i], truth[:, i], bins)
        total = sum(b.count for b in table)
        ece = sum(
            b.count / total * abs(b.positive_rate - b.mean_probability)
            for b in table
            if b.positive_rate is not None and b.mean_probability is not None
        )
        result.append(LabelCalibration(label, float(ece), table))
    return tuple(result)


def binary_cross_entropy(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """Mean over every (example, label) of ``-log p`` for a present label and ``-log (1 - p)``
    for an absent one; probabilities are clipped to [1e-12, 1 - 1e-12] so that a confident
    miss costs a large finite amount, not infinity."""
    probs, truth = _pair(probabilities, y_true)
    clipped = np.clip(probs, 1e-12, 1.0 - 1e-12)
    return float(-np.mean(np.where(truth, np.log(clipped), np.log1p(-clipped))))


def binary_cross_entropy_from_logits(
    logits: np.ndarray,
    y_true: np.ndarray,
    temperature: float = 1.0,
    pos_weight: np.ndarray | None = None,
) -> float:
    """``binary_cross_entropy`` of ``sigmoid(logits / temperature)``, computed from the logits
    (``softplus(-z)`` for a present label, ``softplus(z)`` for an absent one) so that
    probabilities rounding to 0 or 1 lose nothing; with ``pos_weight`` (per label) each present
    label's term is weighted as torch's ``BCEWithLogitsLoss`` does (``train-head``'s loss).
    In float64."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    scaled, present = _pair(logits, y_true, finite_only=True)
    scaled = scaled / temperature
    truth = present.astype(np.float64)
    weight = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    # -log sigmoid(z) = log(1 + exp(-z)) and -log(1 - sigmoid(z)) = log(1 + exp(z)), stably.
    loss = weight * truth * np.logaddexp(0.0, -scaled) + (1.0 - truth) * np.logaddexp(0.0, scaled)
    return float(loss.mean())


def _pair(
    values: np.ndarray, y_true: np.ndarray, finite_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    array, truth = np.asarray(values, dtype=np.float64), np.asarray(y_true)
    if array.ndim != 2 or array.shape != truth.shape or array.size == 0:
        raise ValueError(f"values {array.shape} and truth {truth.shape} must be one 2-D shape")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError("truth must hold only 0 and 1")
    if finite_only and not np.all(np.isfinite(array)):
        raise ValueError("logits must be finite")
    if not finite_only and not np.all((array >= 0) & (array <= 1)):
        raise ValueError("probabilities must be in [0, 1]")
    return array, truth.astype(bool)


def _column(probabilities: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, positive = np.asarray(probabilities, dtype=np.float64), np.asarray(truth)
    if probs.ndim != 1 or probs.shape != positive.shape or probs.size == 0:
        raise ValueError(
            f"probabilities {probs.shape} and truth {positive.shape} must be one non-empty 1-D "
            "shape"
        )
    if not np.all((probs >= 0) & (probs <= 1)):
        raise ValueError("probabilities must be in [0, 1]")
    if not np.isin(positive, (0, 1)).all():
        raise ValueError("truth must hold only 0 and 1")
    return probs, positive.astype(bool)
