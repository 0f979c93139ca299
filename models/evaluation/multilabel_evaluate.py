"""The sections of an ``evaluate`` report for a multilabel bundle (``task: multilabel``).

``evaluate`` loads the bundle and the features as for a multiclass bundle and hands the head's
outputs here. Decisions use the manifest's per-label thresholds (``probability >= threshold``,
as the service decides), so the scores are those of the label sets clients would receive;
average precision and the precision-recall curves are threshold-free. The metrics'
conventions are in ``multilabel_metrics``, the calibration's in ``multilabel_calibration``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.bundle.manifest import Manifest
from app.core.pipeline import Pipeline, sigmoid
from models.data.dataset import Dataset, DatasetError, load_dataset
from models.data.features import Features
from models.evaluation import multilabel_calibration as calibration
from models.evaluation.head_runs import ABLATION, NOT_SUPPORTED, head_outputs
from models.evaluation.multilabel_metrics import (
    CURVE_POINTS,
    multilabel_report,
    precision_recall_curve,
    thinned,
)

# The ablation's headline scores, as in the report's summary (plus the calibration's mean ECE).
ABLATION_SCORES = ("micro_f1", "macro_f1", "mean_average_precision", "subset_accuracy")


def load_multilabel(
    path: Path, image_root: Path | None, labels: Sequence[str], bundle: str
) -> Dataset:
    """The dataset's label sets, over the bundle's labels in the head's column order."""
    try:
        return load_dataset(path, image_root, labels, task="multilabel")
    except DatasetError as exc:
        if "is not in the labels" not in str(exc):
            raise
        # The loader cannot know the labels came from a bundle: say which, and what they are.
        raise DatasetError(f"{exc} of the bundle {bundle} ({', '.join(labels)})") from exc


def metrics_section(
    probabilities: np.ndarray, y_true: np.ndarray, manifest: Manifest
) -> dict[str, Any]:
    """Scores at the manifest's thresholds, average precision and label-set statistics."""
    report = multilabel_report(
        y_true, probabilities, manifest.decision_thresholds(), manifest.labels
    )
    fields = dataclasses.asdict(report)
    del fields["labels"]  # the bundle section has them; per_label names each row
    fields["average_precision_skipped"] = list(report.average_precision_skipped)
    fields["per_label"] = [dataclasses.asdict(scores) for scores in report.per_label]
    return fields


def _calibration_entry(
    probabilities: np.ndarray,
    y_true: np.ndarray,
    labels: Sequence[str],
    bce: float,
    temperature: float | None,
    bins: int,
) -> dict[str, Any]:
    per_label = calibration.label_calibration(probabilities, y_true, labels, bins)
    return {
        "temperature": temperature,
        "mean_ece": float(np.mean([entry.ece for entry in per_label])),
        "binary_cross_entropy": bce,
        "per_label": [
            {
                "label": entry.label,
                "ece": entry.ece,
                "bins": [dataclasses.asdict(b) for b in entry.bins],
            }
            for entry in per_label
        ],
    }


def calibration_section(
    scores: np.ndarray,
    served: np.ndarray,
    y_true: np.ndarray,
    manifest: Manifest,
    bins: int,
) -> dict[str, Any]:
    """Per-label ECE (and its mean over labels) and binary cross-entropy, before (T = 1) and
    after (the bundle's T, as served) temperature scaling, as for a multiclass bundle."""
    head, labels = manifest.fusion_head, manifest.labels
    if head.output_type != "logits":
        return {
            "applies": False,
            "note": "the head outputs probabilities: temperature scaling does not apply",
            "bins": bins,
            "served": _calibration_entry(
                served, y_true, labels, calibration.binary_cross_entropy(served, y_true), None, bins
            ),
        }
    before = sigmoid(scores, 1.0, dtype=np.float64)
    return {
        "applies": True,
        "temperature": head.temperature,
        "bins": bins,
        "before": _calibration_entry(
            before,
            y_true,
            labels,
            calibration.binary_cross_entropy_from_logits(scores, y_true, 1.0),
            1.0,
            bins,
        ),
        "after": _calibration_entry(
            served,
            y_true,
            labels,
            calibration.binary_cross_entropy_from_logits(scores, y_true, head.temperature),
            head.temperature,
            bins,
        ),
    }


def curves_section(
    probabilities: np.ndarray, y_true: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Each label's precision-recall curve, thinned to at most ``CURVE_POINTS`` points (labels
    without positives have none: their recall is undefined)."""
    curves = []
    for i, label in enumerate(labels):
        entry: dict[str, Any] = {"label": label, "positives": int(y_true[:, i].sum())}
        if entry["positives"]:
            curve = thinned(precision_recall_curve(y_true[:, i], probabilities[:, i]))
            entry |= {
                "precision": curve.precision.tolist(),
                "recall": curve.recall.tolist(),
                "thresholds": curve.thresholds.tolist(),
            }
        curves.append(entry)
    return {"max_points": CURVE_POINTS, "labels": curves}


def ablation_section(
    pipeline: Pipeline, features: Features, y_true: np.ndarray, bins: int
) -> list[dict[str, Any]]:
    """The headline scores with both modalities, the image alone and the text alone."""
    manifest = pipeline.manifest
    rows = []
    for key, title, image, text, needs_without in ABLATION:
        row: dict[str, Any] = {"input": key, "title": title, "supported": True}
        if needs_without is not None and not pipeline.accepts_missing(needs_without):
            row |= {"supported": False, "note": NOT_SUPPORTED}
        else:
            _, served = head_outputs(pipeline, features, image, text)
            scores = metrics_section(served, y_true, manifest)
            per_label = calibration.label_calibration(served, y_true, manifest.labels, bins)
            row |= {name: scores[name] for name in ABLATION_SCORES}
            row["mean_ece"] = float(np.mean([entry.ece for entry in per_label]))
        rows.append(row)
    return rows


def sections(
    scores: np.ndarray,
    served: np.ndarray,
    y_true: np.ndarray,
    manifest: Manifest,
    bins: int,
) -> dict[str, Any]:
    """The report's ``metrics``, ``calibration`` and ``precision_recall_curves``."""
    return {
        "metrics": metrics_section(served, y_true, manifest),
        "calibration": calibration_section(scores, served, y_true, manifest, bins),
        "precision_recall_curves": curves_section(served, y_true, manifest.labels),
    }


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The terminal summary's scores (after its bundle-and-dataset line)."""
    scores = report["metrics"]
    lines = [
        f"micro-F1 {scores['micro_f1']:.4f}  macro-F1 {scores['macro_f1']:.4f}  "
        f"sample-F1 {scores['samples_f1']:.4f}  mAP {_num(scores['mean_average_precision'])}",
        f"subset accuracy {scores['subset_accuracy']:.4f}  Hamming loss "
        f"{scores['hamming_loss']:.4f}  labels per item {scores['mean_predicted_cardinality']:.2f}"
        f" predicted / {scores['mean_true_cardinality']:.2f} true",
    ]
    if scores["average_precision_skipped"]:
        skipped = ", ".join(scores["average_precision_skipped"])
        lines.append(f"mAP leaves out labels without positives: {skipped}")
    section = report["calibration"]
    if section["applies"]:
        before, after = section["before"], section["after"]
        bce = (before["binary_cross_entropy"], after["binary_cross_entropy"])
        lines.append(
            f"mean per-label ECE {before['mean_ece']:.4f} at T=1 -> {after['mean_ece']:.4f} at "
            f"T={after['temperature']:g}  (BCE {bce[0]:.4f} -> {bce[1]:.4f})"
        )
    else:
        lines.append(f"mean per-label ECE {section['served']['mean_ece']:.4f} ({section['note']})")
    for row in report["ablation"]:
        value = (
            f"micro-F1 {row['micro_f1']:.4f}  macro-F1 {row['macro_f1']:.4f}  "
            f"mAP {_num(row['mean_average_precision'])}  subset acc {row['subset_accuracy']:.4f}"
            if row["supported"]
            else row["note"]
        )
        lines.append(f"  {row['title']:<22} {value}")
    return lines
