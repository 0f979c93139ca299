"""Measure how informative the generated texts are, with plain logistic-regression probes.

Usage: ``python -m models.recipes.fashion_mnist.probe_texts [--old-rev REV] [--seed 0] [--out FILE]
[--train-limit 20000] [--val-size 5000] [--test-limit N] [--dataset-dir DIR] [--cache-dir DIR]``

The data is the labelled dataset of ``models.recipes.fashion_mnist.dataset_writer`` (same split and
seeded texts), written to ``--dataset-dir`` (PNGs already there are kept) and read back with
``models.data.dataset.load_dataset``. Features come from ``models.data.features`` (the bundle
loaded as
the service loads it, the service's preprocessing, the shared feature cache): image features,
L2-normalised, and the text encoder's (unit) sentence embedding of each scheme's texts.
Three scikit-learn ``LogisticRegression`` probes, C picked on val from a small grid: image
only, text only, and the concatenation [image | text]. With ``--old-rev`` the texts of
``models/recipes/fashion_mnist/titles.py`` as of that git revision (drawn from the same seeded
streams) are probed too, side by side. Prints a table and writes a JSON file (default
``models/.cache/probe_texts.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from models.data.dataset import SPLITS, load_dataset
from models.data.features import DEFAULT_CACHE_DIR, FeatureExtractor, load_engine
from models.recipes.fashion_mnist import build_default_bundle as bundle
from models.recipes.fashion_mnist import dataset_writer, titles
from models.recipes.fashion_mnist.dataset_writer import (
    DATASET_FILE,
    STREAM_TEST_TEXTS,
    STREAM_TRAIN_TEXTS,
    Row,
    stream,
)
from models.recipes.fashion_mnist.raw_data import DEFAULT_DATA_DIR, LABELS

C_GRID: dict[str, tuple[float, ...]] = {
    "image_only": (3.0, 10.0, 30.0),
    "text_only": (0.3, 1.0, 3.0, 10.0),
    "fused": (3.0, 10.0, 30.0),
}
REPO = Path(__file__).resolve().parents[3]
CACHE_DIR = REPO / "models" / ".cache"


def _log(message: str) -> None:
    print(message, flush=True)


@dataclass
class Split:
    rows: list[Row]  # source file and index of each example, in dataset order
    labels: np.ndarray
    image: np.ndarray  # L2-normalised image features


@dataclass
class Data:
    labels: dict[str, np.ndarray]  # all labels of each source file
    splits: dict[str, Split]


def load_data(args: argparse.Namespace, extractor: FeatureExtractor) -> Data:
    """Write the probe's dataset (``models.recipes.fashion_mnist.dataset_writer``), read it back
    and embed its images."""
    written = dataset_writer.write(
        args.dataset_dir,
        args.data_dir,
        args.val_size,
        args.train_limit,
        args.test_limit,
        args.seed,
    )
    labels, rows = written.labels, written.rows
    dataset = load_dataset(args.dataset_dir / DATASET_FILE, labels=LABELS)
    features = extractor.extract(dataset.examples)
    image = features.image / np.linalg.norm(features.image, axis=1, keepdims=True)
    # The file's rows are ``rows``, in order.
    split_of = np.asarray([e.split for _, e in zip(rows, dataset.examples, strict=True)])
    splits = {}
    for name in SPLITS:
        where = np.flatnonzero(split_of == name)
        splits[name] = Split(
            [rows[i] for i in where],
            dataset.label_indices([dataset.examples[i] for i in where]),
            image[where],
        )
    return Data(labels, splits)


TITLES_PATH = "models/recipes/fashion_mnist/titles.py"


def scheme_at(rev: str) -> types.ModuleType:
    """The titles module as of git revision ``rev``, loaded as a module (it was
    ``models/fashion_texts.py`` before the toolkit and the recipe were separated)."""
    for path in (TITLES_PATH, "models/fashion_texts.py"):
        shown = subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True
        )
        if shown.returncode == 0:
            module = types.ModuleType(f"titles_at_{rev}")
            exec(compile(shown.stdout, f"{rev}:{path}", "exec"), module.__dict__)
            return module
    raise SystemExit(f"probe-texts: no titles module at revision {rev}")


def fit_probe(
    features: dict[str, np.ndarray], labels: dict[str, np.ndarray], grid: tuple[float, ...]
) -> dict[str, float]:
    """One probe per C on train; the best on val, with its val and test accuracy."""
    best: dict[str, float] = {}
    for c in grid:
        started = time.perf_counter()
        probe = LogisticRegression(C=c, max_iter=3000).fit(features["train"], labels["train"])
        val = float(accuracy_score(labels["val"], probe.predict(features["val"])))
        _log(f"    C={c:g}: val {val:.4f} ({time.perf_counter() - started:.0f} s)")
        if not best or val > best["val"]:
            test = float(accuracy_score(labels["test"], probe.predict(features["test"])))
            best = {"C": c, "val": val, "test": test}
    return best


def probe_scheme(
    scheme: types.ModuleType, data: Data, extractor: FeatureExtractor, seed: int
) -> dict[str, Any]:
    """Text-only and fused probes on the texts of one ``fashion_texts`` scheme."""
    streams = {"train": STREAM_TRAIN_TEXTS, "t10k": STREAM_TEST_TEXTS}
    texts = {
        source: scheme.describe_all(labels, stream(seed, streams[source]))
        for source, labels in data.labels.items()
    }
    labels = {name: split.labels for name, split in data.splits.items()}
    text = {
        name: extractor.texts([texts[row.source][row.index] for row in split.rows])
        for name, split in data.splits.items()
    }
    fused = {name: np.hstack([split.image, text[name]]) for name, split in data.splits.items()}
    results: dict[str, Any] = {"bayes_text_accuracy": float(scheme.bayes_text_accuracy())}
    for probe, features in (("text_only", text), ("fused", fused)):
        _log(f"  {probe}")
        results[probe] = fit_probe(features, labels, C_GRID[probe])
    results["example_test_texts"] = texts["t10k"][:8]
    return results


def table(results: dict[str, Any]) -> str:
    image = results["image_only"]["test"]
    rows = [
        "| Texts | Image only | Text only | Fused | Fused - image | Bayes text |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, scheme in results["schemes"].items():
        text, fused = scheme["text_only"]["test"], scheme["fused"]["test"]
        rows.append(
            f"| {name} | {image:.4f} | {text:.4f} | {fused:.4f} | "
            f"{(fused - image) * 100:+.2f} pts | {scheme['bayes_text_accuracy']:.4f} |"
        )
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Probe the generated texts' informativeness.")
    parser.add_argument("--old-rev", help="also probe titles.py as of this git revision")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=20000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--test-limit", type=int, help="first N t10k images (default: all)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--bundle-dir", type=Path, default=bundle.DEFAULT_DIR)
    parser.add_argument(
        "--dataset-dir",
        type=Path,
        default=CACHE_DIR / "probe_texts_dataset",
        help="where the models.recipes.fashion_mnist.dataset_writer dataset is written",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="feature cache")
    parser.add_argument("--out", type=Path, default=CACHE_DIR / "probe_texts.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extractor = FeatureExtractor(load_engine(args.bundle_dir), args.cache_dir)
    data = load_data(args, extractor)
    labels = {name: split.labels for name, split in data.splits.items()}
    _log("image_only")
    image = {name: split.image for name, split in data.splits.items()}
    results: dict[str, Any] = {
        "seed": args.seed,
        "sizes": {name: len(split.rows) for name, split in data.splits.items()},
        "image_only": fit_probe(image, labels, C_GRID["image_only"]),
        "schemes": {},
    }
    schemes = {"current": titles}
    if args.old_rev:
        schemes = {f"at {args.old_rev}": scheme_at(args.old_rev), **schemes}
    for name, scheme in schemes.items():
        _log(f"texts: {name}")
        results["schemes"][name] = probe_scheme(scheme, data, extractor, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _log(table(results))
    _log(f"- wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
