"""Multilabel classification metrics for ``evaluate``, and for ``train-head``'s validation
scores (``models.training.multilabel_scores``): numpy in, floats and dataclasses out.

Truth is an ``[examples, labels]`` indicator array (0/1 or bool); scores are per-label
probabilities in [0, 1]; a label is predicted when its probability is at or above its threshold
(``decide``), as the service decides. Conventions, each that of scikit-learn with the
``zero_division`` named (the tests check every number against scikit-learn):

* A label's precision, recall or F1 whose denominator is 0 is 0 (``zero_division=0``), and
  macro averages are unweighted means over *every* label, those without a single positive
  included, as ``classification_metrics`` does for classes: reports on different subsets of one
  dataset stay comparable. Micro averages pool the counts of all labels (0 when undefined).
* Sample F1 is the mean over examples of ``2 |true & predicted| / (|true| + |predicted|)``; an
  example with no true label and none predicted scores 1 (``zero_division=1``): "no label" is
  a right answer, and data where many items have no label must not read as failures.
* Average precision is scikit-learn's un-interpolated step sum ``sum_k (R_k - R_{k-1}) P_k``
  over the distinct scores, highest first. It is undefined for a label without positives,
  which is left out of the mean (mAP) and named in ``average_precision_skipped``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Most points kept of a label's precision-recall curve in a report (for its plot): enough for a
# smooth figure, few enough that the JSON of a large test set stays small.
CURVE_POINTS = 200


@dataclass(frozen=True)
class LabelScores:
    """One label at its threshold: precision, recall, F1, true and predicted counts, and its
    threshold-free average precision (None without positives)."""

    label: str
    threshold: float
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    average_precision: float | None


@dataclass(frozen=True)
class MultilabelReport:
    """Scores of per-label decisions against label sets (see the module's conventions)."""

    labels: tuple[str, ...]
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    samples_f1: float
    mean_average_precision: float | None
    average_precision_skipped: tuple[str, ...]
    hamming_loss: float
    subset_accuracy: float
    mean_true_cardinality: float
    mean_predicted_cardinality: float
    empty_true_sets: int
    empty_predicted_sets: int
    per_label: tuple[LabelScores, ...]


@dataclass(frozen=True)
class PrecisionRecallCurve:
    """A label's curve, one point per distinct score (highest first): predicting the label at
    ``probability >= thresholds[k]`` gives ``precision[k]`` and ``recall[k]``."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class DecisionScores:
    """Precision, recall and F1 of boolean decisions against the truth: per label (arrays over
    the labels, with each label's true and predicted counts) and micro (counts pooled over
    every label). Undefined ratios are 0 (see the module's conventions)."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    predicted: np.ndarray
    micro_precision: float
    micro_recall: float
    micro_f1: float

    @property
    def macro_f1(self) -> float:
        """The unweighted mean of every label's F1, labels without positives included."""
        return float(np.mean(self.f1))


def decide(probabilities: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Boolean ``[examples, labels]``: each probability at or above its label's threshold.

    The thresholds are compared in the probabilities' own dtype: the service compares a
    float32 probability with a Python float threshold, which NumPy rounds to float32, so a
    probability at a threshold's float32 value is predicted here exactly when it is served.
    """
    probs = _probabilities(probabilities)
    limits = np.asarray(thresholds, dtype=np.float64)
    if limits.shape != (probs.shape[1],):
        raise ValueError(f"{limits.size} thresholds for {probs.shape[1]} labels")
    dtype = probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64
    result: np.ndarray = probs >= limits.astype(dtype)
    return result


def decision_scores(y_true: np.ndarray, predicted: np.ndarray) -> DecisionScores:
    """Per-label and micro precision, recall and F1 of ``predicted`` (boolean, e.g. from
    ``decide``) against ``y_true``, both ``[examples, labels]``."""
    truth, guess = _indicators(y_true), np.asarray(predicted, dtype=bool)
    if guess.shape != truth.shape:
        raise ValueError(f"truth has shape {truth.shape} but the decisions {guess.shape}")
    tp, n_pred, n_true = (truth & guess).sum(axis=0), guess.sum(axis=0), truth.sum(axis=0)
    return DecisionScores(
        precision=_ratio(tp, n_pred),
        recall=_ratio(tp, n_true),
        f1=_ratio(2 * tp, n_pred + n_true),
        support=n_true,
        predicted=n_pred,
        micro_precision=float(_ratio(tp.sum(), n_pred.sum())),
        micro_recall=float(_ratio(tp.sum(), n_true.sum())),
        micro_f1=float(_ratio(2 * tp.sum(), n_pred.sum() + n_true.sum())),
    )


def precision_recall_curve(truth: np.ndarray, scores: np.ndarray) -> PrecisionRecallCurve:
    """One label's precision and recall at each distinct score taken as the threshold."""
    positive, values = _column(truth, scores)
    order = np.argsort(-values, kind="stable")
    ranked, hits = values[order], positive[order]
    # The last of each run of equal scores: a threshold admits all of them or none.
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    true_positives = np.cumsum(hits)[ends].astype(np.float64)
    admitted = (ends + 1).astype(np.float64)
    total = float(hits.sum())
    recall = true_positives / total if total else np.zeros_like(true_positives)
    return PrecisionRecallCurve(true_positives / admitted, recall, ranked[ends])


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision of one label's scores; None when it has no positive example."""
    positive, _ = _column(truth, scores)
    if not positive.any():
        return None
    curve = precision_recall_curve(truth, scores)
    steps = np.diff(np.r_[0.0, curve.recall])
    return float(np.sum(steps * curve.precision))


def label_average_precisions(y_true: np.ndarray, probabilities: np.ndarray) -> list[float | None]:
    """Each label's ``average_precision`` (None for a label without positives)."""
    truth, probs = _indicators(y_true), _probabilities(probabilities)
    if truth.shape != probs.shape:
        raise ValueError(f"truth has shape {truth.shape} but probabilities {probs.shape}")
    return [average_precision(truth[:, i], probs[:, i]) for i in range(truth.shape[1])]


def mean_average_precision(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """mAP: the mean average precision over the labels with a positive; None if none has one."""
    return _mean_of_defined(label_average_precisions(y_true, probabilities))


def thinned(curve: PrecisionRecallCurve, points: int = CURVE_POINTS) -> PrecisionRecallCurve:
    """At most ``points`` of the curve, evenly spaced along it, its ends kept (for plots; the
    average precision is always computed on the whole curve)."""
    if points < 2:
        raise ValueError(f"a curve needs at least 2 points, got {points}")
    if curve.recall.size <= points:
        return curve
    keep = np.unique(np.round(np.linspace(0, curve.recall.size - 1, points)).astype(np.int64))
    return PrecisionRecallCurve(curve.precision[keep], curve.recall[keep], curve.thresholds[keep])


def multilabel_report(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    thresholds: Sequence[float],
    labels: Sequence[str],
) -> MultilabelReport:
    """Every score of the decisions ``decide(probabilities, thresholds)`` against ``y_true``,
    and each label's average precision from the probabilities themselves."""
    truth = _indicators(y_true)
    probs = _probabilities(probabilities)
    if truth.shape != probs.shape:
        raise ValueError(f"truth has shape {truth.shape} but probabilities {probs.shape}")
    if len(labels) != truth.shape[1]:
        raise ValueError(f"{len(labels)} labels for {truth.shape[1]} columns")
    predicted = decide(probs, thresholds)
    scores = decision_scores(truth, predicted)
    row_hits = (truth & predicted).sum(axis=1)
    row_total = predicted.sum(axis=1) + truth.sum(axis=1)
    # An example with neither true nor predicted labels is exactly right: F1 1 (see above).
    row_f1 = np.where(row_total > 0, 2 * row_hits / np.maximum(row_total, 1), 1.0)
    ap = label_average_precisions(truth, probs)
    per_label = tuple(
        LabelScores(
            label=label,
            threshold=float(thresholds[i]),
            precision=float(scores.precision[i]),
            recall=float(scores.recall[i]),
            f1=float(scores.f1[i]),
            support=int(scores.support[i]),
            predicted=int(scores.predicted[i]),
            average_precision=ap[i],
        )
        for i, label in enumerate(labels)
    )
    return MultilabelReport(
        labels=tuple(labels),
        micro_precision=scores.micro_precision,
        micro_recall=scores.micro_recall,
        micro_f1=scores.micro_f1,
        macro_precision=float(np.mean(scores.precision)),
        macro_recall=float(np.mean(scores.recall)),
        macro_f1=scores.macro_f1,
        samples_f1=float(np.mean(row_f1)),
        mean_average_precision=_mean_of_defined(ap),
        average_precision_skipped=tuple(
            label for label, value in zip(labels, ap, strict=True) if value is None
        ),
        hamming_loss=float(np.mean(truth != predicted)),
        subset_accuracy=float(np.mean(np.all(truth == predicted, axis=1))),
        mean_true_cardinality=float(np.mean(truth.sum(axis=1))),
        mean_predicted_cardinality=float(np.mean(predicted.sum(axis=1))),
        empty_true_sets=int(np.sum(~truth.any(axis=1))),
        empty_predicted_sets=int(np.sum(~predicted.any(axis=1))),
        per_label=per_label,
    )


def _mean_of_defined(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None; None if every one is."""
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` as float64, 0 where the denominator is 0 (no warning)."""
    top = np.asarray(numerator, dtype=np.float64)
    bottom = np.asarray(denominator, dtype=np.float64)
    return np.divide(top, bottom, out=np.zeros(np.broadcast(top, bottom).shape), where=bottom > 0)


def _indicators(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"truth must have shape [examples, labels], got {array.shape}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError("truth must hold only 0 and 1")
    return array.astype(bool)


def _probabilities(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"probabilities must have shape [examples, labels], got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.all((array >= 0) & (array <= 1)):  # NaN fails too
        raise ValueError("probabilities must be in [0, 1]")
    return array


def _column(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive, values = np.asarray(truth), np.asarray(scores, dtype=np.float64)
    if positive.ndim != 1 or positive.shape != values.shape or positive.size == 0:
        raise ValueError(
            f"truth and scores must be non-empty 1-D arrays of one length, got "
            f"{positive.shape} and {values.shape}"
        )
    if not np.isin(positive, (0, 1)).all():
        raise ValueError("truth must hold only 0 and 1")
    if not np.all(np.isfinite(values)):
        raise ValueError("scores must be finite")
    return positive.astype(bool), values
