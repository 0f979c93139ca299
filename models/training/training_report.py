"""The ``training_report.json`` of ``train-head``: options, data, every strategy's validation
scores, the winner, its temperature (and, multilabel, its thresholds and loss weights).

The model card (``models.reporting.head_card``) is rendered from this report alone.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from app.core.pipeline import sigmoid
from models.data.dataset import Dataset
from models.data.features import EncoderSource
from models.evaluation.classification_metrics import (
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
)
from models.evaluation.multilabel_metrics import decide, decision_scores
from models.training.fusion_head import head_logits
from models.training.fusion_training import FeatureSet, TrainedHead, ValScores
from models.training.multilabel_fitting import MAX_POS_WEIGHT, THRESHOLD_RULE
from models.training.multilabel_scores import MultilabelScores
from models.training.splits import TrainingSplits


def strategy_entry(result: TrainedHead, labels: Sequence[str]) -> dict[str, Any]:
    """One strategy's validation scores and training record."""
    val = result.val
    entry: dict[str, Any]
    if isinstance(val, MultilabelScores):
        entry = {
            "val_micro_f1": val.micro_f1,
            "val_macro_f1": val.macro_f1,
            "val_map": val.mean_average_precision,
            "val_loss": val.loss,
            "val_image_only_micro_f1": val.image_only_micro_f1,
            "val_text_only_micro_f1": val.text_only_micro_f1,
            "val_temperature": val.temperature,
            "val_thresholds": dict(zip(labels, val.thresholds, strict=True)),
        }
    else:
        entry = {
            "val_accuracy": val.accuracy,
            "val_loss": val.loss,
            "val_macro_f1": val.macro_f1,
            "val_image_only_accuracy": val.image_only_accuracy,
            "val_text_only_accuracy": val.text_only_accuracy,
        }
    entry |= {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 3),
        "parameters": result.parameters,
        "val_loss_per_epoch": result.val_losses,
    }
    weights = result.head.modality_weights()
    if weights is not None:
        entry["modality_weights"] = {"image": weights[0], "text": weights[1]}
    per_label = result.head.label_modality_weights()
    if per_label is not None:
        entry["modality_weights_per_label"] = {
            label: {"image": image, "text": text}
            for label, image, text in zip(labels, *per_label, strict=True)
        }
    return entry


def calibration(winner: TrainedHead, val: FeatureSet) -> dict[str, float]:
    """The winner's temperature, and how it changed calibration on validation."""
    if isinstance(winner.val, MultilabelScores):
        return {
            "value": winner.val.temperature,
            "val_bce_before": winner.val.bce_before,
            "val_bce_after": winner.val.bce_after,
        }
    logits = head_logits(winner.head, val.image, val.text)
    temperature = fit_temperature(logits, val.labels)
    return {
        "value": temperature,
        "val_ece_before": expected_calibration_error(calibrated_probabilities(logits), val.labels),
        "val_ece_after": expected_calibration_error(
            calibrated_probabilities(logits, temperature), val.labels
        ),
    }


def thresholds(winner: TrainedHead, val: FeatureSet, labels: Sequence[str]) -> dict[str, Any]:
    """Multilabel: the winner's threshold per label, the rule, and each label's validation
    precision, recall and F1 at its threshold."""
    assert isinstance(winner.val, MultilabelScores)
    logits = head_logits(winner.head, val.image, val.text)
    probabilities = sigmoid(logits, winner.val.temperature, dtype=np.float64)
    scores = decision_scores(val.labels, decide(probabilities, winner.val.thresholds))
    return {
        "rule": THRESHOLD_RULE,
        "per_label": {
            label: {
                "threshold": threshold,
                "val_positives": int(positives),
                "val_precision": float(precision),
                "val_recall": float(recall),
                "val_f1": float(f1),
            }
            for label, threshold, positives, precision, recall, f1 in zip(
                labels,
                winner.val.thresholds,
                scores.support,
                scores.precision,
                scores.recall,
                scores.f1,
                strict=True,
            )
        },
    }


def build(
    args: argparse.Namespace,
    dataset: Dataset,
    splits: TrainingSplits,
    engine: EncoderSource,
    results: Sequence[TrainedHead],
    winner: TrainedHead,
    val: FeatureSet,
) -> dict[str, Any]:
    """The report, before the bundle is written (``write_bundle`` adds ``fusion_head`` and
    ``manifest``)."""
    base = engine.bundle.manifest
    data: dict[str, Any] = {
        "file": str(dataset.path.resolve()),
        "image_root": str((args.image_root or dataset.path.parent).resolve()),
        "labels": list(dataset.labels),
        "sizes": {
            "train": len(splits.train),
            "val": len(splits.val),
            "test_unused": splits.unused_test,
        },
        "val_source": splits.val_source,
        "class_counts": splits.class_counts(dataset),
    }
    if dataset.multilabel:
        data["empty_label_sets"] = splits.empty_label_sets()
    report: dict[str, Any] = {
        "tool": "fusionserve train-head",
        "task": dataset.task,
        "seed": args.seed,
        "options": asdict(args.options)
        | {"strategies": args.strategies, "val_fraction": args.val_fraction},
        "dataset": data,
        "base_bundle": {
            "path": str(engine.bundle.root),
            "name": base.name,
            "version": base.version,
            "image_embedding_dim": base.image_encoder.embedding_dim,
            "text_embedding_dim": base.text_encoder.embedding_dim,
        },
        "strategies": {r.strategy: strategy_entry(r, dataset.labels) for r in results},
        "winner": winner.strategy,
        "temperature": calibration(winner, val),
    }
    if winner.pos_weight is not None:
        report["loss"] = {
            "kind": "binary cross-entropy with logits, per-label pos_weight",
            "pos_weight_range": [1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT],
            "pos_weight": dict(zip(dataset.labels, winner.pos_weight.tolist(), strict=True)),
        }
        report["thresholds"] = thresholds(winner, val, dataset.labels)
    report["versions"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    return report


def summary(result: TrainedHead) -> str:
    """One log line for a trained strategy."""
    val = result.val
    if isinstance(val, ValScores):
        scores = f"val accuracy {val.accuracy:.4f}"
    else:
        scores = (
            f"val micro-F1 {val.micro_f1:.4f}, macro-F1 {val.macro_f1:.4f}, "
            f"mAP {val.mean_average_precision:.4f}"
        )
    return (
        f"- {result.strategy}: {scores}, val loss {val.loss:.4f}, {result.epochs_run} epochs "
        f"(best {result.best_epoch}) in {result.seconds:.1f} s"
    )
