"""Write Fashion-MNIST with generated titles as a FusionServe labelled dataset.

Usage::

    python -m models.recipes.fashion_mnist.dataset_writer --out DIR [--data-dir
    /usr/share/datasets/fashion-mnist]
        [--train-limit 20000] [--val-size 5000] [--test-limit N] [--seed 0]

Writes ``DIR/images/{train,t10k}/NNNNN.png`` (each 28x28 greyscale image exactly as in the
dataset, ``NNNNN`` its index in the source file) and ``DIR/dataset.jsonl`` with the fields
``image``, ``text``, ``label`` and ``split`` (the format of ``models.data.dataset``; see
``models/README.md``, "Labelled datasets"). Splits are those of
``models.recipes.fashion_mnist.default_head``: ``split_indices`` draws ``--val-size`` validation
and the next ``--train-limit`` training images from the training file; ``test`` is the first
``--test-limit`` images of the t10k file (all by default). Texts come from
``models.recipes.fashion_mnist.titles``, drawn for the whole source file from per-purpose seeded
streams, so an image's text never depends on the chosen subset. Rows are ordered train, val, test,
each by source index. PNGs that already hold identical bytes are not rewritten, and
``dataset.jsonl`` is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.recipes.fashion_mnist.raw_data import DEFAULT_DATA_DIR, LABELS, load_split, png_bytes
from models.recipes.fashion_mnist.titles import describe_all

DATASET_FILE = "dataset.jsonl"
# Independent random streams derived from the seed, so changing one use never shifts another.
STREAM_SPLIT, STREAM_TRAIN_TEXTS, STREAM_TEST_TEXTS = 0, 1, 2
_TEXT_STREAMS = {"train": STREAM_TRAIN_TEXTS, "t10k": STREAM_TEST_TEXTS}


def stream(seed: int, purpose: int) -> np.random.Generator:
    """The seeded generator of one purpose (``STREAM_*``)."""
    return np.random.default_rng([seed, purpose])


def split_indices(total: int, val_size: int, train_limit: int, seed: int) -> dict[str, np.ndarray]:
    """Sorted, disjoint ``train`` and ``val`` indices into a training file of ``total`` images."""
    if val_size + train_limit > total:
        raise SystemExit(f"--val-size + --train-limit must be at most {total}")
    order = stream(seed, STREAM_SPLIT).permutation(total)
    return {
        "train": np.sort(order[val_size : val_size + train_limit]),
        "val": np.sort(order[:val_size]),
    }


def source_texts(source: str, labels: np.ndarray, seed: int) -> list[str]:
    """The generated title of every image of a source file (``train`` or ``t10k``)."""
    return describe_all(labels, stream(seed, _TEXT_STREAMS[source]))


@dataclass(frozen=True)
class Row:
    """One dataset row: where its image comes from and what ``dataset.jsonl`` records."""

    source: str  # Fashion-MNIST file: "train" or "t10k"
    index: int  # position in that file
    text: str
    label: str
    split: str

    @property
    def image(self) -> str:
        return f"images/{self.source}/{self.index:05d}.png"

    def json(self) -> str:
        fields = {"image": self.image, "text": self.text, "label": self.label, "split": self.split}
        return json.dumps(fields, ensure_ascii=False)


def chosen_indices(
    train_total: int,
    test_total: int,
    val_size: int,
    train_limit: int,
    test_limit: int | None,
    seed: int,
) -> dict[str, np.ndarray]:
    """Source indices of each split: train and val from the train file, test from t10k."""
    chosen = split_indices(train_total, val_size, train_limit, seed)
    if test_limit is not None and not 0 <= test_limit <= test_total:
        raise SystemExit(f"--test-limit must be in 0..{test_total}")
    chosen["test"] = np.arange(test_total if test_limit is None else test_limit)
    return chosen


def build_rows(
    labels: dict[str, np.ndarray], chosen: dict[str, np.ndarray], seed: int
) -> list[Row]:
    """Rows in a stable order: train, val, test, each by source index."""
    texts = {
        source: source_texts(source, source_labels, seed)
        for source, source_labels in labels.items()
    }
    rows = []
    for split in ("train", "val", "test"):
        source = "t10k" if split == "test" else "train"
        for index in chosen[split].tolist():
            label = LABELS[int(labels[source][index])]
            rows.append(Row(source, index, texts[source][index], label, split))
    return rows


def write_png(path: Path, data: bytes) -> bool:
    """Write ``data`` unless ``path`` already holds exactly it; True if written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".partial")
    staging.write_bytes(data)
    staging.replace(path)
    return True


def write_dataset(out: Path, rows: list[Row], images: dict[str, np.ndarray]) -> int:
    """Write the rows' PNGs and ``dataset.jsonl`` (atomically); returns PNGs (re)written."""
    written = sum(
        write_png(out / row.image, png_bytes(images[row.source][row.index])) for row in rows
    )
    staging = out / (DATASET_FILE + ".partial")
    staging.write_text("".join(row.json() + "\n" for row in rows), encoding="utf-8")
    staging.replace(out / DATASET_FILE)
    return written


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write Fashion-MNIST with generated titles as a labelled dataset."
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--train-limit", type=int, default=20000, help="training images")
    parser.add_argument("--val-size", type=int, default=5000, help="validation images")
    parser.add_argument("--test-limit", type=int, help="first N t10k images (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Written:
    """What ``write`` wrote: the labels of both source files, the chosen indices, the rows."""

    labels: dict[str, np.ndarray]
    chosen: dict[str, np.ndarray]
    rows: list[Row]
    pngs_written: int


def write(
    out: Path,
    data_dir: Path,
    val_size: int,
    train_limit: int,
    test_limit: int | None,
    seed: int,
) -> Written:
    """Write the dataset (PNGs and ``DATASET_FILE``) to ``out``."""
    files = {source: load_split(source, data_dir) for source in ("train", "t10k")}
    labels = {source: source_labels for source, (_, source_labels) in files.items()}
    chosen = chosen_indices(
        len(labels["train"]), len(labels["t10k"]), val_size, train_limit, test_limit, seed
    )
    rows = build_rows(labels, chosen, seed)
    out.mkdir(parents=True, exist_ok=True)
    written = write_dataset(out, rows, {source: images for source, (images, _) in files.items()})
    return Written(labels=labels, chosen=chosen, rows=rows, pngs_written=written)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = write(
        args.out, args.data_dir, args.val_size, args.train_limit, args.test_limit, args.seed
    )
    sizes = ", ".join(f"{split} {len(result.chosen[split])}" for split in ("train", "val", "test"))
    print(
        f"- wrote {args.out / DATASET_FILE}: {len(result.rows)} rows ({sizes}); "
        f"{result.pngs_written} PNGs written, {len(result.rows) - result.pngs_written} already "
        "up to date",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
