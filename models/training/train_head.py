"""``fusionserve train-head``: train a fusion head on a labelled dataset, write a new bundle.

Usage: ``python -m models.training.train_head --dataset FILE --base-bundle DIR --out DIR
[--task multiclass|multilabel] [options]``

1. Read the dataset (``models.data.dataset``; ``--task multilabel``: each label field is a set
   of labels) and pick training and validation rows (``models.training.splits``); ``test``
   rows are left for ``evaluate``.
2. Embed them with the base bundle's encoders through the service's own pipeline
   (``models.data.features``: batched, cached on disk).
3. Train every selected fusion strategy (``models.training.fusion_training``) and pick the
   winner: on validation accuracy (multiclass) or on validation micro-F1 at per-label
   thresholds tuned after a sigmoid temperature (multilabel,
   ``models.training.multilabel_fitting``); fit a temperature on its validation logits.
4. Export the winner to ONNX, write the bundle (``models.training.head_bundle``), load it as the
   service does and check its probabilities against torch; only then move it into place.

Errors in the input (dataset, images, base bundle, options, output directory) print one line on
stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.bundle.manifest import MANIFEST_FILENAME
from app.core.encoders import Encoders
from app.errors import StartupError
from models.data.dataset import TASKS, Dataset, DatasetError, Example, load_dataset
from models.data.features import DEFAULT_CACHE_DIR, FeatureError, FeatureExtractor, load_encoders
from models.reporting import head_card
from models.training import head_bundle, training_report
from models.training.fusion_head import STRATEGIES
from models.training.fusion_training import (
    FeatureSet,
    TrainedHead,
    TrainOptions,
    pick_winner,
    train_strategies,
)
from models.training.multilabel_scores import MultilabelScores
from models.training.splits import (
    DEFAULT_VAL_FRACTION,
    TrainingDataError,
    TrainingSplits,
    select_splits,
)

DEFAULT_VERSION = "0.1.0"
USER_ERRORS = (
    DatasetError,
    FeatureError,
    StartupError,
    TrainingDataError,
    head_bundle.OutputError,
)


def _log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = TrainOptions()
    parser = argparse.ArgumentParser(
        prog="fusionserve train-head",
        description="Train a fusion head on a labelled image+text dataset and write a bundle "
        "that reuses a base bundle's encoders.",
    )
    parser.add_argument("--dataset", type=Path, required=True, help="CSV or JSONL dataset")
    parser.add_argument("--image-root", type=Path, help="default: the dataset file's folder")
    parser.add_argument("--labels", help="comma-separated label order (default: sorted)")
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="multiclass",
        help="multiclass: one label per example; multilabel: a '|'-separated label set "
        "(or a JSONL list) per example, possibly empty (default: multiclass)",
    )
    parser.add_argument("--base-bundle", type=Path, required=True, help="encoders to reuse")
    parser.add_argument("--out", type=Path, required=True, help="new bundle directory")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated, some of {','.join(STRATEGIES)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="validation share carved from train when there are no val rows",
    )
    parser.add_argument("--max-epochs", type=int, default=defaults.max_epochs)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument(
        "--modality-dropout",
        type=float,
        default=defaults.modality_dropout,
        help="per example, probability of dropping the image, and of dropping the text",
    )
    parser.add_argument("--projection-dim", type=int, default=defaults.projection_dim)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--name", help="bundle name (default: the --out folder's name)")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="bundle version")
    parser.add_argument("--description", help="bundle description")
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="feature cache directory"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not cache features")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown or not args.strategies or len(set(args.strategies)) != len(args.strategies):
        parser.error(f"--strategies: expected distinct names among {', '.join(STRATEGIES)}")
    if args.labels is not None:
        args.labels = [label.strip() for label in args.labels.split(",")]
    args.name = args.name or args.out.resolve().name
    if not 1 <= len(args.name) <= 128 or not 1 <= len(args.version) <= 64:
        parser.error("--name needs 1 to 128 characters and --version 1 to 64")
    args.options = TrainOptions(
        max_epochs=args.max_epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        modality_dropout=args.modality_dropout,
        projection_dim=args.projection_dim,
        dropout=args.dropout,
    )
    try:
        args.options.check()
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _features(
    extractor: FeatureExtractor, dataset: Dataset, rows: tuple[Example, ...]
) -> FeatureSet:
    features = extractor.extract(rows)
    targets = dataset.label_matrix(rows) if dataset.multilabel else dataset.label_indices(rows)
    return FeatureSet(features.image, features.text, targets)


def _description(args: argparse.Namespace, dataset: Dataset, base: Any, strategy: str) -> str:
    if args.description is not None:
        return str(args.description)
    kind = "-label multilabel" if dataset.multilabel else "-class"
    return (
        f"{len(dataset.labels)}{kind} image+text classifier trained by fusionserve train-head "
        f"on {dataset.path.name} ({strategy} fusion) over the encoders of {base.name} "
        f"{base.version}."
    )


@dataclass
class Prepared:
    """The dataset, its training/validation rows and their features from the base bundle."""

    dataset: Dataset
    splits: TrainingSplits
    engine: Encoders
    train: FeatureSet
    val: FeatureSet


def prepare(args: argparse.Namespace) -> Prepared:
    head_bundle.check_output(args.out, args.base_bundle, args.force)
    dataset = load_dataset(args.dataset, args.image_root, args.labels, task=args.task)
    splits = select_splits(dataset, args.val_fraction, args.seed)
    _log(
        f"dataset {dataset.path}: {len(dataset.labels)} labels, {len(splits.train)} train, "
        f"{len(splits.val)} val ({splits.val_source}), {splits.unused_test} test rows unused"
    )
    engine = load_encoders(args.base_bundle)
    cache = None if args.no_cache else args.cache_dir
    extractor = FeatureExtractor(engine, cache, progress=not args.no_progress)
    train = _features(extractor, dataset, splits.train)
    val = _features(extractor, dataset, splits.val)
    return Prepared(dataset, splits, engine, train, val)


def write_bundle(
    args: argparse.Namespace, data: Prepared, winner: TrainedHead, report: dict[str, Any]
) -> None:
    """Export the winner, write and check the bundle, then move it to ``args.out``.

    Adds ``fusion_head`` (file, size, checks) and ``manifest`` to ``report``."""
    bundle, val = data.engine.bundle, data.val
    temperature = report["temperature"]["value"]
    thresholds = winner.val.thresholds if isinstance(winner.val, MultilabelScores) else None
    with head_bundle.staged_bundle(args.out, args.base_bundle, args.force) as staging:
        head_bundle.copy_encoders(bundle.manifest, bundle.root, staging)
        head_path = staging / head_bundle.HEAD_FILE
        onnx_diff = head_bundle.export_head(winner.head, head_path, val.image, val.text)
        head = head_bundle.file_info(head_path)
        manifest = head_bundle.manifest_dict(
            json.loads((bundle.root / MANIFEST_FILENAME).read_text(encoding="utf-8")),
            labels=data.dataset.labels,
            name=args.name,
            version=args.version,
            description=_description(args, data.dataset, bundle.manifest, winner.strategy),
            head_sha256=head["sha256"],
            temperature=temperature,
            thresholds=thresholds,
        )
        head_bundle.write_json(staging / MANIFEST_FILENAME, manifest)
        report["fusion_head"] = head | {
            "parameters": winner.parameters,
            "onnx_vs_torch_max_abs_diff": onnx_diff,
        }
        report["manifest"] = manifest
        card = head_card.render(report)
        (staging / head_bundle.MODEL_CARD_FILE).write_text(card, encoding="utf-8")
        report["fusion_head"]["served_vs_torch_max_abs_diff"] = head_bundle.check_served(
            staging,
            winner.head,
            temperature,
            val.image,
            val.text,
            multilabel=thresholds is not None,
        )
        head_bundle.write_json(staging / head_bundle.REPORT_FILE, report)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and write the bundle; returns the training report."""
    started = time.perf_counter()
    data = prepare(args)
    features_s = time.perf_counter() - started
    _log(f"training {', '.join(args.strategies)} (seed {args.seed})")
    progress = not args.no_progress
    results = train_strategies(
        args.strategies,
        data.train,
        data.val,
        data.dataset.labels,
        args.options,
        args.seed,
        progress=progress,
    )
    for result in results:
        _log(training_report.summary(result))
    winner = pick_winner(results)
    report = training_report.build(
        args, data.dataset, data.splits, data.engine, results, winner, data.val
    )
    report["timings_s"] = {
        "features": round(features_s, 3),
        "training": round(time.perf_counter() - started - features_s, 3),
    }
    write_bundle(args, data, winner, report)
    total = time.perf_counter() - started
    calibration, head = report["temperature"], report["fusion_head"]
    _log(head_card.strategy_table(report))
    measure = "BCE" if data.dataset.multilabel else "ECE"
    before, after = (calibration[f"val_{measure.lower()}_{when}"] for when in ("before", "after"))
    _log(
        f"winner {winner.strategy}; temperature {calibration['value']:.4f} (val {measure} "
        f"{before:.4f} -> {after:.4f}); ONNX vs torch {head['onnx_vs_torch_max_abs_diff']:.1e}, "
        f"served vs torch {head['served_vs_torch_max_abs_diff']:.1e}"
    )
    if isinstance(winner.val, MultilabelScores):
        pairs = zip(data.dataset.labels, winner.val.thresholds, strict=True)
        thresholds = ", ".join(f"{label} {t:.3f}" for label, t in pairs)
        _log(f"thresholds (val micro-F1 {winner.val.micro_f1:.4f}): {thresholds}")
    _log(f"wrote {args.out} in {total:.1f} s; run `fusionserve evaluate` for a held-out report")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except USER_ERRORS as exc:
        print(f"train-head: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
