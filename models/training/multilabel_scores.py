"""A multilabel head's validation scores, which describe each strategy and pick the winner.

Per strategy, on the validation split: a temperature is fitted on the fused logits, then the
per-label thresholds are tuned on the calibrated probabilities
(``models.training.multilabel_calibration``), and the scores are measured at those thresholds:

* micro-F1 (true positives, false positives and false negatives pooled over every label): the
  score that picks the winner (ties: the lower validation loss);
* macro-F1: the unweighted mean of every label's F1 (0 for a label with no positive and no
  prediction, as in ``models.evaluation``);
* mAP: the mean over labels with at least one validation positive of the average precision
  (threshold-free; undefined without positives), computed as
  ``sklearn.metrics.average_precision_score`` does (``sum_n (R_n - R_{n-1}) P_n`` over the
  distinct scores, no interpolation; the tests check it against sklearn);
* loss: the training objective (BCE with the training split's ``pos_weight``), which early
  stopping watches too;
* image-only and text-only micro-F1: the same head, temperature and thresholds with the other
  modality marked missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.training.fusion_head import FusionHead, head_logits
from models.training.multilabel_calibration import (
    binary_cross_entropy,
    fit_sigmoid_temperature,
    sigmoid_probabilities,
    tune_thresholds,
)


@dataclass(frozen=True)
class MultilabelScores:
    """A multilabel head's scores on the validation split (fused: both modalities present)."""

    micro_f1: float
    loss: float  # BCE with the training split's pos_weight
    macro_f1: float
    mean_average_precision: float
    image_only_micro_f1: float  # the text marked missing
    text_only_micro_f1: float  # the image marked missing
    temperature: float
    thresholds: tuple[float, ...]  # per label, tuned after the temperature
    bce_before: float  # unweighted BCE at T = 1, and at the fitted T
    bce_after: float

    @property
    def primary(self) -> float:
        """The score the winner is picked on."""
        return self.micro_f1


def f1_scores(targets: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(micro-F1, macro-F1) of boolean predictions [N, labels] against multi-hot targets."""
    truth, guess = np.asarray(targets) > 0.5, np.asarray(predicted, dtype=bool)
    tp = (truth & guess).sum(axis=0)
    fp = (~truth & guess).sum(axis=0)
    fn = (truth & ~guess).sum(axis=0)
    return float(_f1(tp.sum(), fp.sum(), fn.sum())), float(np.mean(_f1(tp, fp, fn)))


def label_scores(targets: np.ndarray, predicted: np.ndarray) -> list[dict[str, float]]:
    """Per label: precision, recall, F1 of boolean predictions, and the number of positives
    (undefined ratios are 0)."""
    truth, guess = np.asarray(targets) > 0.5, np.asarray(predicted, dtype=bool)
    tp = (truth & guess).sum(axis=0)
    predicted_count, positives = guess.sum(axis=0), truth.sum(axis=0)
    precision = np.where(predicted_count > 0, tp / np.maximum(predicted_count, 1), 0.0)
    recall = np.where(positives > 0, tp / np.maximum(positives, 1), 0.0)
    f1 = _f1(tp, predicted_count - tp, positives - tp)
    return [
        {
            "val_positives": int(n),
            "val_precision": float(p),
            "val_recall": float(r),
            "val_f1": float(f),
        }
        for n, p, r, f in zip(positives, precision, recall, f1, strict=True)
    ]


def mean_average_precision(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean average precision over the labels with a positive (0.0 if none has one)."""
    truth = np.asarray(targets) > 0.5
    scores = [
        average_precision(truth[:, j], np.asarray(probabilities)[:, j])
        for j in range(truth.shape[1])
        if truth[:, j].any()
    ]
    return float(np.mean(scores)) if scores else 0.0


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """One label's average precision: ``sum_n (R_n - R_{n-1}) P_n``, a step at each distinct
    score from the highest down (tied scores enter together)."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], truth[order].astype(np.int64)
    last_of_each_score = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_positives = np.cumsum(hits)[last_of_each_score]
    precision = true_positives / (last_of_each_score + 1)
    recall = true_positives / hits.sum()
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def multilabel_validation_scores(
    head: FusionHead,
    image: np.ndarray,
    text: np.ndarray,
    targets: np.ndarray,
    pos_weight: np.ndarray,
) -> MultilabelScores:
    logits = head_logits(head, image, text)
    temperature = fit_sigmoid_temperature(logits, targets)
    probabilities = sigmoid_probabilities(logits, temperature)
    thresholds = tune_thresholds(probabilities, targets)
    micro, macro = f1_scores(targets, probabilities >= thresholds)
    none = np.zeros(len(image), dtype=bool)

    def single(image_present: np.ndarray | None, text_present: np.ndarray | None) -> float:
        only = head_logits(head, image, text, image_present, text_present)
        return f1_scores(targets, sigmoid_probabilities(only, temperature) >= thresholds)[0]

    return MultilabelScores(
        micro_f1=micro,
        loss=binary_cross_entropy(logits, targets, pos_weight=pos_weight),
        macro_f1=macro,
        mean_average_precision=mean_average_precision(targets, probabilities),
        image_only_micro_f1=single(None, none),
        text_only_micro_f1=single(none, None),
        temperature=temperature,
        thresholds=tuple(float(t) for t in thresholds),
        bce_before=binary_cross_entropy(logits, targets),
        bce_after=binary_cross_entropy(logits, targets, temperature),
    )


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2 tp / (2 tp + fp + fn), 0 where that is 0 / 0 (never a warning)."""
    denominator = 2 * np.asarray(tp) + fp + fn
    result: np.ndarray = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return result
