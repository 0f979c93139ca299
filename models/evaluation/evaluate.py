"""``fusionserve evaluate``: how good a bundle is on a labelled dataset, through the service's code.

The bundle is loaded exactly as the service loads it (``models.data.features.load_engine``), the
features come from the bundle's own encoders and preprocessing (``FeatureExtractor``), and the
head runs through ``Pipeline.head_scores`` and ``Pipeline.probabilities``: the numbers are those
of the probabilities the service would return.

The report (a JSON-serialisable dict) holds classification scores, calibration before and after
temperature scaling, a modality ablation (fused, image only, text only), counts and timings.
``write_report`` writes ``report.json``, ``report.md`` and two PNGs.

    python -m models.evaluation.evaluate --bundle models/default --dataset data.csv --out eval/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.bundle.manifest import Modality
from app.errors import FusionServeError
from app.pipeline import Pipeline
from models.data.dataset import SPLITS, Dataset, DatasetError, Example, load_dataset
from models.data.features import (
    DEFAULT_CACHE_DIR,
    DEVICES,
    Device,
    FeatureError,
    FeatureExtractor,
    Features,
    load_engine,
)
from models.evaluation import classification_metrics

HEAD_CHUNK = 4096
# (key, title, image present, text present, modality the head must do without)
ABLATION: tuple[tuple[str, str, bool, bool, Modality | None], ...] = (
    ("fused", "Fused (image + text)", True, True, None),
    ("image_only", "Image only", True, False, "text"),
    ("text_only", "Text only", False, True, "image"),
)
NOT_SUPPORTED = "not supported by this head"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
RELIABILITY_PNG = "reliability_diagram.png"


def load_labelled(
    path: Path, image_root: Path | None, labels: Sequence[str], bundle: str
) -> Dataset:
    """The dataset with its labels fixed to the bundle's (in the head's column order)."""
    dataset = load_dataset(path, image_root)
    known = set(labels)
    unknown = [example for example in dataset.examples if example.label not in known]
    if unknown:
        names = sorted({example.label for example in unknown})
        raise DatasetError(
            f"{path}: line {unknown[0].line}: label {unknown[0].label!r} is not one of the "
            f"bundle {bundle}'s labels ({', '.join(labels)}); unknown labels in the file: "
            f"{', '.join(map(repr, names))}"
        )
    return dataclasses.replace(dataset, labels=tuple(labels))


def choose_split(dataset: Dataset, split: str | None) -> tuple[str, tuple[Example, ...]]:
    """The split to evaluate (default: ``test`` if the file has test rows, else ``all``)."""
    if split is None:
        split = "test" if dataset.split("test") else "all"
    examples = dataset.examples if split == "all" else dataset.split(split)
    if not examples:
        raise DatasetError(f"{dataset.path}: no examples in split {split!r}")
    return split, examples


def head_outputs(
    pipeline: Pipeline,
    features: Features,
    image_present: bool = True,
    text_present: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The head's raw output and the served probabilities, in chunks, as the service computes
    them: a missing modality gets zero features and a 0 presence flag (``Pipeline.run``)."""
    scores, probabilities = [], []
    for start in range(0, len(features), HEAD_CHUNK):
        chunk = features.take(np.arange(start, min(start + HEAD_CHUNK, len(features))))
        rows = len(chunk)
        image = chunk.image if image_present else np.zeros_like(chunk.image)
        text = chunk.text if text_present else np.zeros_like(chunk.text)
        raw = pipeline.head_scores(
            image, text, np.full(rows, image_present), np.full(rows, text_present)
        )
        scores.append(raw)
        probabilities.append(pipeline.probabilities(raw))
    return np.concatenate(scores), np.concatenate(probabilities)


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


def evaluate(
    bundle_dir: Path,
    dataset_path: Path,
    *,
    image_root: Path | None = None,
    split: str | None = None,
    bins: int = classification_metrics.DEFAULT_BINS,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
    device: Device = "cpu",
) -> dict[str, Any]:
    """Run the bundle over the dataset (its sessions on ``device``, the service's setting);
    the report as a JSON-serialisable dict."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    engine = load_engine(bundle_dir, device=device)
    pipeline, manifest = engine.pipeline, engine.bundle.manifest
    lap("load_bundle_s")
    dataset = load_labelled(dataset_path, image_root, manifest.labels, manifest.name)
    used_split, examples = choose_split(dataset, split)
    y_true = dataset.label_indices(examples)
    lap("load_dataset_s")
    features = FeatureExtractor(engine, cache_dir, progress=progress).extract(examples)
    lap("features_s")
    scores, served = head_outputs(pipeline, features)
    lap("head_s")
    head = manifest.fusion_head
    report: dict[str, Any] = {
        "bundle": {
            "path": str(bundle_dir),
            "name": manifest.name,
            "version": manifest.version,
            "labels": list(manifest.labels),
            "head_file": head.file,
            "head_sha256": head.sha256,
            "output_type": head.output_type,
            "temperature": head.temperature,
            "accepts_missing": {
                "image": pipeline.accepts_missing("image"),
                "text": pipeline.accepts_missing("text"),
            },
            "providers": engine.providers,  # what each model really ran on
        },
        "dataset": {
            "path": str(dataset_path),
            "image_root": str(image_root if image_root is not None else dataset_path.parent),
            "split": used_split,
            "examples": len(examples),
            "total_examples": len(dataset.examples),
            "split_counts": _split_counts(dataset),
        },
        "metrics": classification_section(served, y_true, manifest.labels),
        "calibration": calibration_section(
            scores, served, y_true, head.output_type, head.temperature, bins
        ),
    }
    lap("metrics_s")
    report["ablation"] = ablation_section(pipeline, features, y_true, bins)
    lap("ablation_s")
    timings["total_s"] = round(sum(timings.values()), 4)
    report["timings"] = timings
    return report


def _split_counts(dataset: Dataset) -> dict[str, int]:
    counts = {name: len(dataset.split(name)) for name in SPLITS}
    counts["unassigned"] = sum(1 for example in dataset.examples if example.split is None)
    return counts


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write the PNGs, ``report.md`` and ``report.json`` into ``out_dir``; their paths."""
    from models.reporting.evaluation_report import render_markdown
    from models.reporting.plots import confusion_matrix_png, reliability_diagram_png

    out_dir.mkdir(parents=True, exist_ok=True)
    report["images"] = {"confusion_matrix": CONFUSION_PNG, "reliability_diagram": RELIABILITY_PNG}
    paths = {
        "confusion_matrix": out_dir / CONFUSION_PNG,
        "reliability_diagram": out_dir / RELIABILITY_PNG,
        "markdown": out_dir / REPORT_MD,
        "json": out_dir / REPORT_JSON,
    }
    confusion_matrix_png(report, paths["confusion_matrix"])
    reliability_diagram_png(report, paths["reliability_diagram"])
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return paths


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    bundle, data, scores = report["bundle"], report["dataset"], report["metrics"]
    lines = [
        f"bundle {bundle['name']} {bundle['version']} on {data['path']} "
        f"(split {data['split']}, {data['examples']} examples)",
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
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionserve evaluate",
        description="Evaluate a bundle on a labelled dataset through the service's pipeline.",
    )
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    parser.add_argument("--dataset", type=Path, required=True, help="CSV or JSONL dataset")
    parser.add_argument("--image-root", type=Path, help="default: the dataset file's folder")
    parser.add_argument(
        "--split",
        choices=[*SPLITS, "all"],
        help="default: test if the dataset has test rows, else all",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--bins", type=int, default=classification_metrics.DEFAULT_BINS, help="calibration bins"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where the models run, as the service's device setting (default: cpu)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.bins < 1:
        print(f"evaluate: --bins must be at least 1, got {args.bins}", file=sys.stderr)
        return 2
    try:
        report = evaluate(
            args.bundle,
            args.dataset,
            image_root=args.image_root,
            split=args.split,
            bins=args.bins,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            device=args.device,
        )
        paths = write_report(report, args.out)
    except (DatasetError, FeatureError, FusionServeError, OSError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    print(f"report: {paths['markdown']} ({paths['json'].name}, {CONFUSION_PNG}, {RELIABILITY_PNG})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
