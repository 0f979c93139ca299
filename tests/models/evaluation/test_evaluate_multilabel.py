"""``evaluate`` on a multilabel bundle: every field of the report, and its numbers against
scikit-learn on the probabilities the service's pipeline computes directly.

The expected values (``multilabel_expected``) come from ``Pipeline.fuse`` (the served
probabilities) on the features ``FeatureExtractor`` gives for the test rows, from the tiny head's
exact numpy logits (``TinyHead.logits``) for the ablation and calibration, and from scikit-learn
for every score. The fixtures (``ml_bundle``, ``ml_data``, ``ml_report``, ``ml_expected``) are in
this folder's conftest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import average_precision_score, log_loss, precision_recall_fscore_support

from tests.models.evaluation.multilabel_expected import TEMPERATURE, ece_by_hand, sklearn_scores
from tests.support.tiny_bundle import TAG_THRESHOLDS, TAGS, TinyHead

METRIC_FIELDS = {
    "micro_precision",
    "micro_recall",
    "micro_f1",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "samples_f1",
    "mean_average_precision",
    "average_precision_skipped",
    "hamming_loss",
    "subset_accuracy",
    "mean_true_cardinality",
    "mean_predicted_cardinality",
    "empty_true_sets",
    "empty_predicted_sets",
    "per_label",
}
PER_LABEL_FIELDS = {
    "label",
    "threshold",
    "precision",
    "recall",
    "f1",
    "support",
    "predicted",
    "average_precision",
}
ABLATION_FIELDS = {
    "input",
    "title",
    "supported",
    "micro_f1",
    "macro_f1",
    "mean_average_precision",
    "subset_accuracy",
    "mean_ece",
}


def test_report_has_every_field(ml_report: dict[str, Any]) -> None:
    assert list(ml_report) == [
        "task",
        "bundle",
        "dataset",
        "metrics",
        "calibration",
        "precision_recall_curves",
        "ablation",
        "timings",
    ]
    assert ml_report["task"] == "multilabel"
    assert ml_report["bundle"]["labels"] == TAGS
    assert ml_report["bundle"]["thresholds"] == TAG_THRESHOLDS
    assert ml_report["bundle"]["temperature"] == TEMPERATURE
    assert ml_report["dataset"]["split"] == "test"
    assert ml_report["dataset"]["examples"] == 36
    assert ml_report["dataset"]["split_counts"] == {
        "train": 12,
        "val": 12,
        "test": 36,
        "unassigned": 0,
    }
    metrics = ml_report["metrics"]
    assert set(metrics) == METRIC_FIELDS
    assert [row["label"] for row in metrics["per_label"]] == TAGS
    for row in metrics["per_label"]:
        assert set(row) == PER_LABEL_FIELDS
    calibration = ml_report["calibration"]
    assert set(calibration) == {"applies", "temperature", "bins", "before", "after"}
    for key in ("before", "after"):
        entry = calibration[key]
        assert set(entry) == {"temperature", "mean_ece", "binary_cross_entropy", "per_label"}
        assert [row["label"] for row in entry["per_label"]] == TAGS
        for row in entry["per_label"]:
            assert set(row) == {"label", "ece", "bins"}
            assert len(row["bins"]) == 15
            assert set(row["bins"][0]) == {
                "lower",
                "upper",
                "count",
                "mean_probability",
                "positive_rate",
            }
    curves = ml_report["precision_recall_curves"]
    assert curves["max_points"] == 200
    assert [c["label"] for c in curves["labels"]] == TAGS
    for curve in curves["labels"]:
        assert set(curve) == {"label", "positives", "precision", "recall", "thresholds"}
        assert len(curve["precision"]) == len(curve["recall"]) == len(curve["thresholds"])
    assert [row["input"] for row in ml_report["ablation"]] == ["fused", "image_only", "text_only"]
    for row in ml_report["ablation"]:
        assert set(row) == ABLATION_FIELDS
    assert set(ml_report["timings"]) >= {"load_bundle_s", "features_s", "metrics_s", "total_s"}


def test_fused_scores_are_those_of_the_pipelines_probabilities(
    ml_report: dict[str, Any], ml_expected: dict[str, Any], ml_bundle: tuple[Path, TinyHead]
) -> None:
    y, predicted, served = ml_expected["y"], ml_expected["predicted"], ml_expected["served"]
    # The served probabilities are the sigmoid of the head's logits / T.
    logits = ml_bundle[1].logits(ml_expected["image"], ml_expected["text"]).astype(np.float64)
    np.testing.assert_allclose(served, expit(logits / TEMPERATURE), atol=1e-6)
    # A non-trivial case: labels both predicted and not, items with no label and with several.
    assert 0 < predicted.mean() < 1
    assert (y.sum(axis=1) == 0).any()
    assert (y.sum(axis=1) > 1).any()
    metrics = ml_report["metrics"]
    for name, value in sklearn_scores(y, predicted, served).items():
        assert metrics[name] == pytest.approx(value), name
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, average=None, zero_division=0
    )
    for i, row in enumerate(metrics["per_label"]):
        assert row["threshold"] == TAG_THRESHOLDS[i]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(
            (precision[i], recall[i], f1[i])
        )
        assert row["support"] == support[i]
        assert row["predicted"] == predicted[:, i].sum()
        assert row["average_precision"] == pytest.approx(
            average_precision_score(y[:, i], served[:, i])
        )
    assert metrics["average_precision_skipped"] == []
    assert metrics["mean_true_cardinality"] == pytest.approx(y.sum(axis=1).mean())
    assert metrics["mean_predicted_cardinality"] == pytest.approx(predicted.sum(axis=1).mean())
    assert metrics["empty_true_sets"] == int((y.sum(axis=1) == 0).sum())
    assert metrics["empty_predicted_sets"] == int((predicted.sum(axis=1) == 0).sum())


def test_calibration_before_and_after_the_bundles_temperature(
    ml_report: dict[str, Any], ml_expected: dict[str, Any], ml_bundle: tuple[Path, TinyHead]
) -> None:
    y = ml_expected["y"]
    logits = ml_bundle[1].logits(ml_expected["image"], ml_expected["text"]).astype(np.float64)
    calibration = ml_report["calibration"]
    assert (calibration["applies"], calibration["temperature"], calibration["bins"]) == (
        True,
        TEMPERATURE,
        15,
    )
    for key, temperature in (("before", 1.0), ("after", TEMPERATURE)):
        probabilities = expit(logits / temperature)
        entry = calibration[key]
        assert entry["temperature"] == temperature
        eces = [ece_by_hand(probabilities[:, i], y[:, i], 15) for i in range(len(TAGS))]
        for row, ece in zip(entry["per_label"], eces, strict=True):
            assert row["ece"] == pytest.approx(ece, abs=1e-6)
            assert sum(b["count"] for b in row["bins"]) == len(y)
        assert entry["mean_ece"] == pytest.approx(np.mean(eces), abs=1e-6)
        bce = np.mean(
            [log_loss(y[:, i], probabilities[:, i], labels=[0, 1]) for i in range(len(TAGS))]
        )
        assert entry["binary_cross_entropy"] == pytest.approx(bce, abs=1e-6)
    assert calibration["before"]["mean_ece"] != pytest.approx(
        calibration["after"]["mean_ece"], abs=1e-3
    )


def test_precision_recall_curves_reach_full_recall(
    ml_report: dict[str, Any], ml_expected: dict[str, Any]
) -> None:
    y = ml_expected["y"]
    for i, curve in enumerate(ml_report["precision_recall_curves"]["labels"]):
        assert curve["positives"] == y[:, i].sum()
        assert curve["recall"][-1] == 1.0
        assert curve["precision"][-1] == pytest.approx(y[:, i].mean())  # every item admitted
        assert curve["thresholds"] == sorted(curve["thresholds"], reverse=True)


def test_ablation_rows_are_the_head_with_its_null_embeddings(
    ml_report: dict[str, Any], ml_expected: dict[str, Any], ml_bundle: tuple[Path, TinyHead]
) -> None:
    head, y = ml_bundle[1], ml_expected["y"]
    image, text = ml_expected["image"], ml_expected["text"]
    present, absent = np.ones(len(y), dtype=bool), np.zeros(len(y), dtype=bool)
    cases = {
        "fused": head.logits(image, text),
        "image_only": head.logits(image, text, present, absent),
        "text_only": head.logits(image, text, absent, present),
    }
    rows = {row["input"]: row for row in ml_report["ablation"]}
    for name, logits in cases.items():
        probabilities = expit(logits.astype(np.float64) / TEMPERATURE)
        predicted = (probabilities >= np.asarray(TAG_THRESHOLDS)).astype(np.int64)
        assert rows[name]["supported"] is True
        expected_scores = sklearn_scores(y, predicted, probabilities)
        for key in ("micro_f1", "macro_f1", "mean_average_precision", "subset_accuracy"):
            assert rows[name][key] == pytest.approx(expected_scores[key], abs=1e-6), (name, key)
        eces = [ece_by_hand(probabilities[:, i], y[:, i], 15) for i in range(len(TAGS))]
        assert rows[name]["mean_ece"] == pytest.approx(np.mean(eces), abs=1e-6)
    assert rows["image_only"]["micro_f1"] != pytest.approx(rows["fused"]["micro_f1"])
    fused, metrics = rows["fused"], ml_report["metrics"]
    assert fused["micro_f1"] == metrics["micro_f1"]
    assert fused["mean_average_precision"] == metrics["mean_average_precision"]
    assert fused["mean_ece"] == ml_report["calibration"]["after"]["mean_ece"]
