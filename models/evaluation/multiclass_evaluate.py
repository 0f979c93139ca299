"""The sections of an ``evaluate`` report for a multiclass bundle (the default task): scores
of the argmax class, calibration of the softmax before and after temperature scaling, and the
modality ablation. ``evaluate`` loads the bundle, the dataset and the features and hands the
head's outputs here (``multilabel_evaluate`` is the multilabel counterpart)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.pipeline import Pipeline
from models.data.features import Features
from models.evaluation import classification_metrics
from models.evaluation.head_runs import ABLATION, NOT_SUPPORTED, head_outputs


def classification_section(
    probabilities: np.ndarray, y_true: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    report = classification_metrics.classification_report(
        y_true, probabilities.argmax(axis=1), labels
    )
    return {
        "accuracy": report.accuracy,
        "macro_precision": report.macro_precision,
        "macro_recall": report.macro_recall,
        "macro_f1": report.macro_f1,
        "per_class": [dataclasses.asdict(scores) for scores in report.per_class],
        "confusion_matrix": report.confusion.astype(int).tolist(),
    }


def _probability_nll(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    picked = probabilities[np.arange(len(y_true)), y_true].astype(np.float64)
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def _calibration_entry(
    probabilities: np.ndarray, y_true: np.ndarray, nll: float, temperature: float | None, bins: int
) -> dict[str, Any]:
    table = classification_metrics.reliability_bins(probabilities, y_true, bins)
    return {
        "temperature": temperature,
        "ece": classification_metrics.expected_calibration_error(probabilities, y_true, bins),
        "nll": nll,
        "bins": [dataclasses.asdict(b) for b in table],
    }


def calibration_section(
    scores: np.ndarray,
    served: np.ndarray,
    y_true: np.ndarray,
    output_type: str,
    temperature: float,
    bins: int,
) -> dict[str, Any]:
    """ECE, NLL and reliability bins before (T = 1) and after (the bundle's T, as served)."""
    if output_type != "logits":
        return {
            "applies": False,
            "note": "the head outputs probabilities: temperature scaling does not apply",
            "bins": bins,
            "served": _calibration_entry(
                served, y_true, _probability_nll(served, y_true), None, bins
            ),
        }
    before = classification_metrics.calibrated_probabilities(scores, 1.0)
    return {
        "applies": True,
        "temperature": temperature,
        "bins": bins,
        "before": _calibration_entry(
            before,
            y_true,
            classification_metrics.negative_log_likelihood(scores, y_true, 1.0),
            1.0,
            bins,
        ),
        "after": _calibration_entry(
            served,
            y_true,
            classification_metrics.negative_log_likelihood(scores, y_true, temperature),
            temperature,
            bins,
        ),
    }


def ablation_section(
    pipeline: Pipeline, features: Features, y_true: np.ndarray, bins: int
) -> list[dict[str, Any]]:
    rows = []
    labels = pipeline.manifest.labels
    for key, title, image, text, needs_without in ABLATION:
        row: dict[str, Any] = {"input": key, "title": title, "supported": True}
        if needs_without is not None and not pipeline.accepts_missing(needs_without):
            row |= {"supported": False, "note": NOT_SUPPORTED}
        else:
            _, served = head_outputs(pipeline, features, image, text)
            scores = classification_section(served, y_true, labels)
            row |= {
                "accuracy": scores["accuracy"],
                "macro_f1": scores["macro_f1"],
                "ece": classification_metrics.expected_calibration_error(served, y_true, bins),
            }
        rows.append(row)
    return rows


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The terminal summary's scores (after its bundle-and-dataset line)."""
    scores = report["metrics"]
    lines = [
        f"accuracy {scores['accuracy']:.4f}  macro P/R/F1 {scores['macro_precision']:.4f} / "
        f"{scores['macro_recall']:.4f} / {scores['macro_f1']:.4f}",
    ]
    calibration = report["calibration"]
    if calibration["applies"]:
        before, after = calibration["before"], calibration["after"]
        lines.append(
            f"ECE {before['ece']:.4f} at T=1 -> {after['ece']:.4f} at T={after['temperature']:g}"
            f"  (NLL {before['nll']:.4f} -> {after['nll']:.4f})"
        )
    else:
        lines.append(f"ECE {calibration['served']['ece']:.4f} ({calibration['note']})")
    for row in report["ablation"]:
        value = (
            f"accuracy {row['accuracy']:.4f}  macro-F1 {row['macro_f1']:.4f}  ECE {row['ece']:.4f}"
            if row["supported"]
            else row["note"]
        )
        lines.append(f"  {row['title']:<22} {value}")
    return lines
