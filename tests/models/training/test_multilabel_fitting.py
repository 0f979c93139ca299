"""Multilabel loss weights, temperature and thresholds of ``train-head``, against direct
computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from app.core.pipeline import sigmoid
from models.evaluation.multilabel_calibration import binary_cross_entropy_from_logits
from models.training.multilabel_fitting import (
    MAX_POS_WEIGHT,
    fit_sigmoid_temperature,
    positive_weights,
    tune_threshold,
    tune_thresholds,
)
from models.training.splits import TrainingDataError


def test_positive_weights_are_negatives_over_positives_clipped() -> None:
    targets = np.zeros((300, 4), dtype=np.float32)
    targets[:100, 0] = 1  # 200 / 100
    targets[:1, 1] = 1  # 299 / 1, clipped to 100
    targets[:, 2] = 1  # on every row: 0 / 300, clipped up to 1/100
    targets[:240, 3] = 1  # 60 / 240
    weights = positive_weights(targets, ["a", "b", "c", "d"])
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [2.0, MAX_POS_WEIGHT, 1 / MAX_POS_WEIGHT, 0.25])
    assert MAX_POS_WEIGHT == 100.0


def test_positive_weights_refuse_a_label_without_positives() -> None:
    targets = np.zeros((5, 2), dtype=np.float32)
    targets[0, 0] = 1
    with pytest.raises(TrainingDataError, match="label 'b' has no positive training example"):
        positive_weights(targets, ["a", "b"])


def test_sigmoid_temperature_minimises_the_mean_bce() -> None:
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, (4000, 3))
    targets = (rng.random((4000, 3)) < 1 / (1 + np.exp(-true_logits))).astype(np.float32)
    overconfident = true_logits * 2.5  # what a head that needs T = 2.5 would output
    temperature = fit_sigmoid_temperature(overconfident, targets)
    assert temperature == pytest.approx(2.5, rel=0.1)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 2001))
    losses = [binary_cross_entropy_from_logits(overconfident, targets, t) for t in grid]
    best = binary_cross_entropy_from_logits(overconfident, targets, temperature)
    assert best <= min(losses) + 1e-9
    np.testing.assert_allclose(
        sigmoid(overconfident, temperature, dtype=np.float64),
        torch.sigmoid(torch.from_numpy(overconfident) / temperature).numpy(),
        rtol=1e-12,
    )


def _brute_force_threshold(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The rule spelt out: every candidate's F1 by counting, one at a time."""
    if targets.sum() == 0:
        return 0.5
    distinct = sorted(set(probabilities.tolist()))
    if len(distinct) < 2:
        return 0.5
    candidates = [min(max((a + b) / 2, 0.01), 0.99) for a, b in itertools.pairwise(distinct)]
    scored = []
    for t in candidates:
        tp = sum(1 for p, y in zip(probabilities, targets, strict=True) if p >= t and y)
        fp = sum(1 for p, y in zip(probabilities, targets, strict=True) if p >= t and not y)
        fn = sum(1 for p, y in zip(probabilities, targets, strict=True) if p < t and y)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        scored.append((-f1, abs(t - 0.5), t))
    return min(scored)[2]


def test_thresholds_follow_the_rule_brute_force() -> None:
    rng = np.random.default_rng(2)
    for trial in range(300):
        rows = int(rng.integers(1, 30))
        # Rounded so that ties among probabilities (and among F1 values) are common.
        probabilities = np.round(rng.random(rows), int(rng.integers(1, 3)))
        if trial % 10 == 0:  # near the ends, where clipping to [0.01, 0.99] matters
            probabilities = np.clip(probabilities, 0, 0.015)
        targets = (rng.random(rows) < rng.random()).astype(np.float32)
        expected = _brute_force_threshold(probabilities, targets)
        assert tune_threshold(probabilities, targets) == expected, (probabilities, targets)


def test_threshold_rule_edge_cases() -> None:
    # No validation positive, or a single distinct probability: 0.5.
    assert tune_threshold(np.array([0.1, 0.9, 0.3]), np.zeros(3)) == 0.5
    assert tune_threshold(np.array([0.7, 0.7]), np.array([1.0, 0.0])) == 0.5
    # Perfectly separable: any midpoint between the classes is best; the one closest to 0.5.
    p, y = np.array([0.05, 0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 0, 1, 1.0])
    assert tune_threshold(p, y) == pytest.approx(0.5)
    # The best F1 wins over closeness to 0.5: 0.3 gives 4/5, 0.5 gives 1/2, 0.7 gives 2/3.
    p, y = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0, 1, 0, 1.0])
    assert tune_threshold(p, y) == pytest.approx(0.3)
    # Equally distant ties go to the lower threshold: 0.25 and 0.75 both give F1 0 here
    # (binary-exact values, so the two distances are equal in floating point too).
    p, y = np.array([0.0, 0.5, 1.0]), np.array([1, 0, 0.0])
    assert tune_threshold(p, y) == 0.25
    # Clipped into [0.01, 0.99].
    p, y = np.array([0.001, 0.002, 0.003]), np.array([0, 1, 1.0])
    assert tune_threshold(p, y) == 0.01
    matrix = tune_thresholds(np.stack([p, p], axis=1), np.stack([y, np.zeros(3)], axis=1))
    np.testing.assert_array_equal(matrix, [0.01, 0.5])
