"""``fusionserve evaluate``: how good a bundle is on a labelled dataset, through the service's code.

The bundle is loaded exactly as the service loads it (``models.data.features.load_engine``), the
features come from the bundle's own encoders and preprocessing (``FeatureExtractor``), and the
head runs through ``Pipeline.head_scores`` and ``Pipeline.probabilities``: the numbers are those
of the probabilities the service would return.

The report (a JSON-serialisable dict) holds classification scores, calibration before and after
temperature scaling, a modality ablation (fused, image only, text only), counts and timings.
``write_report`` writes ``report.json``, ``report.md`` and two PNGs.

A multilabel bundle (manifest ``task: multilabel``) reads the dataset's label sets and is
scored at its per-label thresholds (``models.evaluation.multilabel_evaluate``); its report has
``"task": "multilabel"`` at the top, its own ``metrics``, ``calibration`` and ablation fields,
``precision_recall_curves``, and three PNGs (per-label F1, precision-recall curves, per-label
reliability). A multiclass report is unchanged and has no ``task`` field.

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

from app.bundle.manifest import Manifest
from app.core.pipeline import Pipeline
from app.errors import FusionServeError
from models.data.dataset import SPLITS, Dataset, DatasetError, Example, load_dataset
from models.data.features import (
    DEFAULT_CACHE_DIR,
    DEVICES,
    Device,
    FeatureError,
    FeatureExtractor,
    load_engine,
)
from models.evaluation import classification_metrics, multiclass_evaluate, multilabel_evaluate
from models.evaluation.head_runs import NOT_SUPPORTED as NOT_SUPPORTED  # re-exported
from models.evaluation.head_runs import head_outputs

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
RELIABILITY_PNG = "reliability_diagram.png"
PER_LABEL_F1_PNG = "per_label_f1.png"
PRECISION_RECALL_PNG = "precision_recall.png"


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
    if manifest.multilabel:
        dataset = multilabel_evaluate.load_multilabel(
            dataset_path, image_root, manifest.labels, manifest.name
        )
    else:
        dataset = load_labelled(dataset_path, image_root, manifest.labels, manifest.name)
    used_split, examples = choose_split(dataset, split)
    lap("load_dataset_s")
    features = FeatureExtractor(engine, cache_dir, progress=progress).extract(examples)
    lap("features_s")
    scores, served = head_outputs(pipeline, features)
    lap("head_s")
    report: dict[str, Any] = {
        "bundle": _bundle_section(bundle_dir, manifest, pipeline, engine.providers),
        "dataset": {
            "path": str(dataset_path),
            "image_root": str(image_root if image_root is not None else dataset_path.parent),
            "split": used_split,
            "examples": len(examples),
            "total_examples": len(dataset.examples),
            "split_counts": _split_counts(dataset),
        },
    }
    if manifest.multilabel:
        y_sets = dataset.label_matrix(examples) > 0.5
        report = {"task": "multilabel", **report}
        report["bundle"]["thresholds"] = manifest.decision_thresholds()
        report |= multilabel_evaluate.sections(scores, served, y_sets, manifest, bins)
        lap("metrics_s")
        report["ablation"] = multilabel_evaluate.ablation_section(pipeline, features, y_sets, bins)
    else:
        head = manifest.fusion_head
        y_true = dataset.label_indices(examples)
        report["metrics"] = multiclass_evaluate.classification_section(
            served, y_true, manifest.labels
        )
        report["calibration"] = multiclass_evaluate.calibration_section(
            scores, served, y_true, head.output_type, head.temperature, bins
        )
        lap("metrics_s")
        report["ablation"] = multiclass_evaluate.ablation_section(pipeline, features, y_true, bins)
    lap("ablation_s")
    timings["total_s"] = round(sum(timings.values()), 4)
    report["timings"] = timings
    return report


def _bundle_section(
    bundle_dir: Path, manifest: Manifest, pipeline: Pipeline, providers: dict[str, list[str]]
) -> dict[str, Any]:
    head = manifest.fusion_head
    return {
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
        "providers": providers,  # what each model really ran on
    }


def _split_counts(dataset: Dataset) -> dict[str, int]:
    counts = {name: len(dataset.split(name)) for name in SPLITS}
    counts["unassigned"] = sum(1 for example in dataset.examples if example.split is None)
    return counts


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write the PNGs, ``report.md`` and ``report.json`` into ``out_dir``; their paths."""
    if report.get("task") == "multilabel":
        return _write_multilabel_report(report, out_dir)
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


def _write_multilabel_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    from models.reporting.evaluation_report import render_markdown
    from models.reporting.multilabel_plots import (
        label_reliability_png,
        per_label_f1_png,
        precision_recall_png,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    report["images"] = {
        "per_label_f1": PER_LABEL_F1_PNG,
        "precision_recall": PRECISION_RECALL_PNG,
        "reliability_diagram": RELIABILITY_PNG,
    }
    paths = {key: out_dir / name for key, name in report["images"].items()}
    per_label_f1_png(report, paths["per_label_f1"])
    precision_recall_png(report, paths["precision_recall"])
    label_reliability_png(report, paths["reliability_diagram"])
    paths["markdown"] = out_dir / REPORT_MD
    paths["json"] = out_dir / REPORT_JSON
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return paths


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    bundle, data = report["bundle"], report["dataset"]
    lines = [
        f"bundle {bundle['name']} {bundle['version']} on {data['path']} "
        f"(split {data['split']}, {data['examples']} examples)",
    ]
    if report.get("task") == "multilabel":
        return "\n".join(lines + multilabel_evaluate.summary_lines(report))
    return "\n".join(lines + multiclass_evaluate.summary_lines(report))


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
        "--bins",
        type=int,
        default=classification_metrics.DEFAULT_BINS,
        help="calibration bins (of the top-class confidence; per label for multilabel bundles)",
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
    others = ", ".join([paths["json"].name, *report["images"].values()])
    print(f"report: {paths['markdown']} ({others})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
