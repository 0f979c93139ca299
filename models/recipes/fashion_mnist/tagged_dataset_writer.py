"""Write Fashion-MNIST with attribute tags and tagged titles as a multilabel dataset.

Usage::

    python -m models.recipes.fashion_mnist.tagged_dataset_writer --out DIR
        [--data-dir /usr/share/datasets/fashion-mnist] [--train-limit 20000] [--val-size 5000]
        [--test-limit N] [--seed 0]

Writes ``DIR/images/{train,t10k}/NNNNN.png`` (exactly as ``dataset_writer`` does: the same
paths and bytes, so both datasets can share one folder), ``DIR/dataset.csv`` with the columns
``image,text,label,split`` where ``label`` is the item's tag set joined by ``|`` in
``attribute_tags.TAGS`` order (read it with ``models.data.dataset.load_dataset(path,
task="multilabel")``), and ``DIR/tag_statistics.json`` (``tag_table()`` and
``tag_statistics()``, for the model card).

Rows and splits are those of ``dataset_writer`` (and so of the default bundle) for the same
seed: ``--val-size`` validation and the next ``--train-limit`` training images of the training
file drawn by ``dataset_writer.split_indices``, the first ``--test-limit`` t10k images (all by
default) as ``test``; rows ordered train, val, test, each by source index. Tags
(``attribute_tags.draw_attributes``) and titles (``tagged_titles.describe_all_tagged``) are
drawn for the whole source file from their own seeded streams (``STREAM_*``), so an image's
tags and title never depend on the chosen subset, and changing the title scheme never changes
the tags. How each tag is made, and how informative each modality is about it, is in
``tag_table()``: the image shows the class tags (as well as it shows the class) and informs the
attribute tags only through their class-dependent priors; the title names the item's group in
63% of titles and states each attribute tag the item has with probability 0.8 (never one it
has not). No item has an empty tag set.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.bundle.manifest import LABEL_SEPARATOR
from models.recipes.fashion_mnist.attribute_tags import TAGS, draw_attributes, tag_rules, tag_sets
from models.recipes.fashion_mnist.dataset_writer import (
    Row,
    chosen_indices,
    stream,
    write_png,
)
from models.recipes.fashion_mnist.raw_data import DEFAULT_DATA_DIR, load_split, png_bytes
from models.recipes.fashion_mnist.tagged_titles import (
    describe_all_tagged,
    stated_tags,
    title_evidence,
)

DATASET_FILE = "dataset.csv"
STATISTICS_FILE = "tag_statistics.json"
COLUMNS = ("image", "text", "label", "split")
SPLITS = ("train", "val", "test")
# Seed streams of this dataset (dataset_writer's are 0..2; its split stream 0 is reused).
STREAM_TRAIN_TAGS, STREAM_TEST_TAGS, STREAM_TRAIN_TITLES, STREAM_TEST_TITLES = 10, 11, 12, 13
_STREAMS = {
    "train": (STREAM_TRAIN_TAGS, STREAM_TRAIN_TITLES),
    "t10k": (STREAM_TEST_TAGS, STREAM_TEST_TITLES),
}


@dataclass(frozen=True)
class TaggedSource:
    """The tags and title of every image of one source file (``train`` or ``t10k``)."""

    tags: list[tuple[str, ...]]
    texts: list[str]


def source_items(source: str, labels: np.ndarray, seed: int) -> TaggedSource:
    """Tags and titles of every image of a source file, from that file's seeded streams."""
    tags_stream, titles_stream = _STREAMS[source]
    attributes = draw_attributes(labels, stream(seed, tags_stream))
    texts = describe_all_tagged(labels, attributes, stream(seed, titles_stream))
    return TaggedSource(tag_sets(labels, attributes), texts)


def build_tagged_rows(
    labels: dict[str, np.ndarray], chosen: dict[str, np.ndarray], seed: int
) -> list[Row]:
    """Rows in a stable order (train, val, test, each by source index); ``Row.label`` is the
    ``|``-joined tag set."""
    items = {source: source_items(source, values, seed) for source, values in labels.items()}
    rows = []
    for split in SPLITS:
        source = "t10k" if split == "test" else "train"
        for index in chosen[split].tolist():
            label = LABEL_SEPARATOR.join(items[source].tags[index])
            rows.append(Row(source, index, items[source].texts[index], label, split))
    return rows


def csv_text(rows: Sequence[Row]) -> str:
    """The dataset file's content: a header and one row each, standard CSV quoting."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((row.image, row.text, row.label, row.split) for row in rows)
    return buffer.getvalue()


def write_tagged_dataset(out: Path, rows: Sequence[Row], images: dict[str, np.ndarray]) -> int:
    """Write the rows' PNGs and ``DATASET_FILE`` (atomically); returns PNGs (re)written."""
    written = sum(
        write_png(out / row.image, png_bytes(images[row.source][row.index])) for row in rows
    )
    out.mkdir(parents=True, exist_ok=True)
    staging = out / (DATASET_FILE + ".partial")
    staging.write_text(csv_text(rows), encoding="utf-8")
    staging.replace(out / DATASET_FILE)
    return written


def _row_tags(row: Row) -> frozenset[str]:
    return frozenset(row.label.split(LABEL_SEPARATOR)) if row.label else frozenset()


def _split_statistics(rows: Sequence[Row]) -> dict[str, Any]:
    count = len(rows)
    tags = [_row_tags(row) for row in rows]
    stated = [stated_tags(row.text) for row in rows]
    positives = {tag: sum(tag in t for t in tags) for tag in TAGS}

    def stated_when(tag: str, has: bool) -> int:
        return sum(tag in s for t, s in zip(tags, stated, strict=True) if (tag in t) == has)

    return {
        "examples": count,
        "positives": positives,
        "frequency": {tag: positives[tag] / count if count else 0.0 for tag in TAGS},
        "empty": sum(not t for t in tags),
        "mean_tags": sum(len(t) for t in tags) / count if count else 0.0,
        # How often the title states a tag, among the items that have it and those that do not.
        "stated_in_title": {
            tag: {"positives": stated_when(tag, True), "negatives": stated_when(tag, False)}
            for tag in TAGS
        },
    }


def tag_statistics(rows: Sequence[Row]) -> dict[str, Any]:
    """Per split (and ``all``): examples, positives and frequency of each tag, empty tag sets,
    mean tags per item, and how often titles state each tag (for the model card)."""
    by_split = {split: [row for row in rows if row.split == split] for split in SPLITS}
    return {
        "tags": list(TAGS),
        "splits": {
            **{split: _split_statistics(chosen) for split, chosen in by_split.items()},
            "all": _split_statistics(rows),
        },
    }


def tag_table() -> list[dict[str, Any]]:
    """Per tag, in ``TAGS`` order: how it is made (source ``class`` or ``title``, rule, prior,
    P(tag | class)), what the image tells (``image``) and what the title tells (``text``:
    exact P(stated | positive) and P(stated | negative) with balanced classes, and how)."""
    table = []
    for rule in tag_rules():
        evidence = title_evidence(rule.tag)
        entry = rule.as_dict()
        entry["text"] = {key: value for key, value in evidence.as_dict().items() if key != "tag"}
        table.append(entry)
    return table


def _cell(value: str) -> str:
    return value.replace("|", "\\|")


def tag_table_markdown() -> str:
    """``tag_table()`` as a Markdown table (per-class probabilities are in the rule; ``|``
    inside a cell is escaped)."""
    lines = [
        "| Tag | Source | Rule | Prior | Image | Title states it (if has / if not) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in tag_table():
        text = entry["text"]
        cells = (
            f"`{entry['tag']}`",
            entry["source"],
            _cell(entry["rule"]),
            f"{entry['prior']:.3f}",
            _cell(entry["image"]),
            f"{text['stated_if_positive']:.3f} / {text['stated_if_negative']:.3f}: "
            + _cell(text["how"]),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class TaggedWritten:
    """What ``write_tagged`` wrote: the chosen indices, the rows, their statistics."""

    chosen: dict[str, np.ndarray]
    rows: list[Row]
    statistics: dict[str, Any]
    pngs_written: int


def write_tagged(
    out: Path,
    images: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    *,
    val_size: int = 5000,
    train_limit: int = 20000,
    test_limit: int | None = None,
    seed: int = 0,
) -> TaggedWritten:
    """Write the tagged dataset of the raw arrays (``images[source]`` uint8 ``[N, 28, 28]``,
    ``labels[source]`` class indices ``[N]``, for sources ``train`` and ``t10k``) to ``out``:
    PNGs, ``DATASET_FILE`` and ``STATISTICS_FILE``."""
    chosen = chosen_indices(
        len(labels["train"]), len(labels["t10k"]), val_size, train_limit, test_limit, seed
    )
    rows = build_tagged_rows(labels, chosen, seed)
    written = write_tagged_dataset(out, rows, images)
    statistics = tag_statistics(rows)
    report = {
        "seed": seed,
        "sizes": {split: len(chosen[split]) for split in SPLITS},
        "tag_table": tag_table(),
        "statistics": statistics,
    }
    staging = out / (STATISTICS_FILE + ".partial")
    staging.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    staging.replace(out / STATISTICS_FILE)
    return TaggedWritten(chosen, rows, statistics, written)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--train-limit", type=int, default=20000, help="training images")
    parser.add_argument("--val-size", type=int, default=5000, help="validation images")
    parser.add_argument("--test-limit", type=int, help="first N t10k images (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = {source: load_split(source, args.data_dir) for source in ("train", "t10k")}
    result = write_tagged(
        args.out,
        {source: images for source, (images, _) in files.items()},
        {source: labels for source, (_, labels) in files.items()},
        val_size=args.val_size,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        seed=args.seed,
    )
    sizes = ", ".join(f"{split} {len(result.chosen[split])}" for split in SPLITS)
    overall = result.statistics["splits"]["all"]
    print(
        f"- wrote {args.out / DATASET_FILE}: {len(result.rows)} rows ({sizes}), "
        f"{overall['mean_tags']:.2f} tags per item; {result.pngs_written} PNGs written, "
        f"{len(result.rows) - result.pngs_written} already up to date",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
