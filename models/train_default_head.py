"""Train the default bundle's fusion head on Fashion-MNIST with synthetic product texts.

Usage: ``python -m models.train_default_head [--train-limit N] [--seed 0]``

Needs the exported encoders in ``models/default`` (exported here if missing) and Fashion-MNIST
(``apt-get install dataset-fashion-mnist``). Steps:

1. Split the 60k training images (seeded): ``--val-size`` for validation (early stopping), the
   next ``--train-limit`` for training. The full 10k test split is the held-out evaluation.
2. Give every image a generated description (``models.fashion_texts``, seeded).
3. Embed images and texts with the bundle's own ONNX encoders (cached in ``models/.cache``).
4. Train image-only, text-only and fused heads with one recipe; evaluate all three.
5. Export the fused head to ``fusion_head.onnx``, write ``training_report.json``,
   ``model_card.md`` and ``models/samples/``, then rewrite and validate the manifest.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from app.bundle.loader import sha256_file
from models import build_default_bundle as bundle
from models import model_card
from models._export_utils import (
    OPSET,
    check_close,
    cpu_session,
    legacy_exporter_warnings_silenced,
    run_session,
    staged_output,
)
from models.embeddings import ImageEmbedder, TextEmbedder
from models.fashion_dataset import source_texts, split_indices
from models.fashion_mnist import DEFAULT_DATA_DIR, LABELS, load_split
from models.fashion_texts import GROUP_OF_LABEL, group_named_in
from models.heads import Head, Recipe, TrainResult, predict_proba, train_head
from models.samples import write_samples

RECIPE = Recipe()
HEAD_TOLERANCE = 1e-5
MAX_HEAD_BYTES = 1_000_000
MODALITIES: dict[str, set[str]] = {
    "image_only": {"image"},
    "text_only": {"text"},
    "fused": {"image", "text"},
}


@dataclass
class Split:
    """One evaluation split: source indices, labels, texts and both embeddings."""

    name: str
    source: str  # "train" or "t10k": the Fashion-MNIST file the images come from
    indices: np.ndarray
    labels: np.ndarray
    texts: list[str]
    image: np.ndarray
    text: np.ndarray

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.image, self.text, self.labels


def _log(message: str) -> None:
    print(message, flush=True)


def load_splits(args: argparse.Namespace) -> dict[str, Split]:
    """Images, labels, texts and embeddings of the train, val and test splits."""
    bundle_dir: Path = args.bundle_dir
    train_images, train_labels = load_split("train", args.data_dir)
    test_images, test_labels = load_split("t10k", args.data_dir)
    # Texts are drawn for the whole source file, so an image's text never depends on the subset.
    train_texts = source_texts("train", train_labels, args.seed)
    test_texts = source_texts("t10k", test_labels, args.seed)
    chosen = split_indices(len(train_labels), args.val_size, args.train_limit, args.seed)
    chosen["test"] = np.arange(len(test_labels))
    sources = {
        "train": ("train", train_images, train_labels, train_texts),
        "val": ("train", train_images, train_labels, train_texts),
        "test": ("t10k", test_images, test_labels, test_texts),
    }
    images = ImageEmbedder(bundle_dir / bundle.IMAGE_ENCODER_FILE)
    texts = TextEmbedder(bundle_dir / bundle.TEXT_ENCODER_FILE, bundle_dir / bundle.TOKENIZER_FILE)
    splits = {}
    for name, (source, all_images, all_labels, all_texts) in sources.items():
        idx = chosen[name]
        split_texts = [all_texts[i] for i in idx]
        splits[name] = Split(
            name=name,
            source=source,
            indices=idx,
            labels=all_labels[idx],
            texts=split_texts,
            image=images.embed(source, all_images, idx),
            text=texts.embed(split_texts),
        )
    return splits


def metrics(head: Head, split: Split) -> dict[str, float]:
    predicted = predict_proba(head, split.image, split.text).argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(split.labels, predicted)),
        "macro_f1": float(f1_score(split.labels, predicted, average="macro")),
    }


def train_all(splits: dict[str, Split], seed: int) -> dict[str, TrainResult]:
    results = {}
    for name, modalities in MODALITIES.items():
        started = time.perf_counter()
        result = train_head(
            splits["train"].arrays(), splits["val"].arrays(), len(LABELS), modalities, RECIPE, seed
        )
        results[name] = result
        _log(
            f"- {name}: {result.epochs_run} epochs (best {result.best_epoch}, val loss "
            f"{result.best_val_loss:.4f}) in {time.perf_counter() - started:.1f} s"
        )
    return results


def export_head(head: Head, path: Path, test: Split) -> float:
    """Export the fused head to ONNX and check it against torch; returns the max abs diff."""
    feeds = {bundle.HEAD_IMAGE_INPUT: test.image, bundle.HEAD_TEXT_INPUT: test.text}
    batch_axis = {0: "batch"}
    with staged_output(path) as staging:
        with legacy_exporter_warnings_silenced():
            torch.onnx.export(
                head,
                (torch.from_numpy(test.image[:2]), torch.from_numpy(test.text[:2])),
                str(staging),
                dynamo=False,
                opset_version=OPSET,
                input_names=[bundle.HEAD_IMAGE_INPUT, bundle.HEAD_TEXT_INPUT],
                output_names=[bundle.HEAD_OUTPUT],
                dynamic_axes={name: batch_axis for name in (*feeds, bundle.HEAD_OUTPUT)},
            )
        if staging.stat().st_size > MAX_HEAD_BYTES:
            raise RuntimeError(f"fusion head is {staging.stat().st_size} bytes, over 1 MB")
        actual = run_session(cpu_session(staging), feeds)[bundle.HEAD_OUTPUT]
        with torch.no_grad():
            expected = head(torch.from_numpy(test.image), torch.from_numpy(test.text)).numpy()
        return check_close("fusion head", actual, expected, HEAD_TOLERANCE)


def evaluate_all(
    results: dict[str, TrainResult], splits: dict[str, Split]
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per head and split: ``{head: {split: {"accuracy": .., "macro_f1": ..}}}``."""
    return {
        name: {split: metrics(result.head, splits[split]) for split in splits}
        for name, result in results.items()
    }


def accuracy_by_text_honesty(results: dict[str, TrainResult], test: Split) -> dict[str, Any]:
    """Test accuracy of each head on texts naming the true group vs a wrong (noisy) group.

    Shows where fusion helps (honest texts) and what a misleading text costs (noisy ones).
    """
    stated = np.asarray([group_named_in(text) for text in test.texts])
    true = np.asarray([GROUP_OF_LABEL[label] for label in test.labels])
    subsets = {"true_group_text": stated == true, "wrong_group_text": stated != true}
    breakdown: dict[str, Any] = {}
    for subset, mask in subsets.items():
        breakdown[subset] = {"count": int(mask.sum())}
        for name, result in results.items():
            probs = predict_proba(result.head, test.image[mask], test.text[mask])
            accuracy = accuracy_score(test.labels[mask], probs.argmax(axis=1))
            breakdown[subset][name] = float(accuracy)
    return breakdown


def build_report(
    args: argparse.Namespace,
    splits: dict[str, Split],
    results: dict[str, TrainResult],
    evaluation: dict[str, dict[str, dict[str, float]]],
    timings: dict[str, float],
    head_path: Path,
    head_diff: float,
) -> dict[str, Any]:
    return {
        "seed": args.seed,
        "data": {
            "dataset": "Fashion-MNIST",
            "sizes": {name: len(split.labels) for name, split in splits.items()},
            "train_source": "train-images-idx3-ubyte (seeded subset)",
            "val_source": "train-images-idx3-ubyte (seeded, disjoint from train)",
            "test_source": "t10k-images-idx3-ubyte (all 10000)",
        },
        "recipe": asdict(RECIPE),
        "heads": {
            name: {
                "modalities": sorted(MODALITIES[name]),
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "metrics": evaluation[name],
            }
            for name, result in results.items()
        },
        "test_accuracy_by_text": accuracy_by_text_honesty(results, splits["test"]),
        "fusion_head": {
            "file": head_path.name,
            "sha256": sha256_file(head_path),
            "bytes": head_path.stat().st_size,
            "onnx_vs_torch_max_abs_diff": head_diff,
        },
        "encoders": {
            "image_encoder_sha256": sha256_file(args.bundle_dir / bundle.IMAGE_ENCODER_FILE),
            "text_encoder_sha256": sha256_file(args.bundle_dir / bundle.TEXT_ENCODER_FILE),
        },
        "timings_s": {key: round(value, 1) for key, value in timings.items()},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }


def check_fused_wins(evaluation: dict[str, dict[str, dict[str, float]]]) -> None:
    """Fail loudly if fusion does not beat both single modalities on the held-out test split."""
    test = {name: scores["test"] for name, scores in evaluation.items()}
    for metric in ("accuracy", "macro_f1"):
        best_single = max(test["image_only"][metric], test["text_only"][metric])
        if not test["fused"][metric] > best_single:
            raise RuntimeError(
                f"fused test {metric} {test['fused'][metric]:.4f} does not beat the best "
                f"single modality ({best_single:.4f}); improve the recipe"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the default bundle's fusion head.")
    parser.add_argument("--train-limit", type=int, default=20000, help="training images")
    parser.add_argument("--val-size", type=int, default=5000, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--bundle-dir", type=Path, default=bundle.DEFAULT_DIR)
    parser.add_argument("--samples-dir", type=Path, default=bundle.DEFAULT_DIR.parent / "samples")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.bundle_dir = args.bundle_dir.resolve()
    torch.use_deterministic_algorithms(True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    bundle.export_encoders(args.bundle_dir, skip_existing=True)
    splits = load_splits(args)
    timings["data_and_embedding"] = time.perf_counter() - started

    started = time.perf_counter()
    results = train_all(splits, args.seed)
    timings["training"] = time.perf_counter() - started

    evaluation = evaluate_all(results, splits)
    check_fused_wins(evaluation)  # before anything is written: a losing head is never shipped
    head_path = args.bundle_dir / bundle.FUSION_HEAD_FILE
    head_diff = export_head(results["fused"].head, head_path, splits["test"])
    _log(f"- wrote {head_path} (ONNX vs torch max abs diff {head_diff:.2e})")
    report = build_report(args, splits, results, evaluation, timings, head_path, head_diff)
    (args.bundle_dir / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    model_card.write(args.bundle_dir / bundle.MODEL_CARD_FILE, report)
    bundle.finish(args.bundle_dir)  # the head changed: rewrite and validate the manifest
    test = splits["test"]
    write_samples(args.samples_dir, args.bundle_dir, test, load_split("t10k", args.data_dir)[0])
    _log(model_card.metrics_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
