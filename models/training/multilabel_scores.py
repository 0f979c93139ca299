"""A multilabel head's validation scores, which describe each strategy and pick the winner.

Per strategy, on the validation split: a temperature is fitted on the fused logits, then the
per-label thresholds are tuned on the calibrated probabilities
(``models.training.multilabel_fitting``), and the scores are measured at those thresholds with
``evaluate``'s own metrics (``models.evaluation.multilabel_metrics``, checked against
scikit-learn there):

* micro-F1 (true positives, false positives and false negatives pooled over every label): the
  score that picks the winner (ties: the lower validation loss);
* macro-F1: the unweighted mean of every label's F1 (0 for a label with no positive and no
  prediction);
* mAP: the mean over labels with at least one validation positive of the average precision
  (threshold-free; undefined without positives, and 0 here when no label has one);
* loss: the training objective (BCE with the training split's ``pos_weight``), which early
  stopping watches too;
* image-only and text-only micro-F1: the same head, temperature and thresholds with the other
  modality marked missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.pipeline import sigmoid
from models.evaluation.multilabel_calibration import binary_cross_entropy_from_logits
from models.evaluation.multilabel_metrics import decide, decision_scores, mean_average_precision
from models.training.fusion_head import FusionHead, head_logits
from models.training.multilabel_fitting import fit_sigmoid_temperature, tune_thresholds


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


def multilabel_validation_scores(
    head: FusionHead,
    image: np.ndarray,
    text: np.ndarray,
    targets: np.ndarray,
    pos_weight: np.ndarray,
) -> MultilabelScores:
    logits = head_logits(head, image, text)
    temperature = fit_sigmoid_temperature(logits, targets)
    probabilities = sigmoid(logits, temperature, dtype=np.float64)
    thresholds = tuple(float(t) for t in tune_thresholds(probabilities, targets))
    fused = decision_scores(targets, decide(probabilities, thresholds))
    mean_ap = mean_average_precision(targets, probabilities)
    none = np.zeros(len(image), dtype=bool)

    def single(image_present: np.ndarray | None, text_present: np.ndarray | None) -> float:
        only = head_logits(head, image, text, image_present, text_present)
        predicted = decide(sigmoid(only, temperature, dtype=np.float64), thresholds)
        return decision_scores(targets, predicted).micro_f1

    return MultilabelScores(
        micro_f1=fused.micro_f1,
        loss=binary_cross_entropy_from_logits(logits, targets, pos_weight=pos_weight),
        macro_f1=fused.macro_f1,
        mean_average_precision=0.0 if mean_ap is None else mean_ap,
        image_only_micro_f1=single(None, none),
        text_only_micro_f1=single(none, None),
        temperature=temperature,
        thresholds=thresholds,
        bce_before=binary_cross_entropy_from_logits(logits, targets),
        bce_after=binary_cross_entropy_from_logits(logits, targets, temperature),
    )
