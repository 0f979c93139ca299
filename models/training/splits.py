"""Which dataset rows ``train-head`` trains and validates on.

Rows with split ``train`` (or no split) train; rows with split ``val`` validate. Without any
``val`` row, a seeded, stratified share of the training rows validates instead. ``test`` rows
are never used: they are for ``evaluate``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from models.data.dataset import Dataset, Example

DEFAULT_VAL_FRACTION = 0.1


class TrainingDataError(ValueError):
    """The dataset cannot train a head (too few examples of a class, ...)."""


@dataclass(frozen=True)
class TrainingSplits:
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    unused_test: int  # rows with split "test", left for evaluate
    val_source: str  # "split column" or how the validation share was carved

    def class_counts(self, dataset: Dataset) -> dict[str, dict[str, int]]:
        """Examples per label in each split, every label listed."""
        counts = {}
        for name, rows in (("train", self.train), ("val", self.val)):
            found = Counter(example.label for example in rows)
            counts[name] = {label: found[label] for label in dataset.labels}
        return counts


def select_splits(
    dataset: Dataset, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> TrainingSplits:
    """The training and validation examples; raises ``TrainingDataError``."""
    pool = tuple(e for e in dataset.examples if e.split in (None, "train"))
    val = dataset.split("val")
    test = len(dataset.split("test"))
    if val:
        splits = TrainingSplits(pool, val, test, "split column")
    else:
        train, carved = _carve(dataset, pool, val_fraction, seed)
        source = f"stratified {val_fraction:g} of the training rows (seed {seed})"
        splits = TrainingSplits(train, carved, test, source)
    _check_every_label_trains(dataset, splits.train)
    return splits


def _carve(
    dataset: Dataset, pool: Sequence[Example], fraction: float, seed: int
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    if not 0 < fraction < 1:
        raise TrainingDataError(f"the validation fraction must be in (0, 1), got {fraction}")
    _check_every_label_trains(dataset, pool, minimum=2, why="to carve a validation share")
    classes = len(dataset.labels)
    size = max(math.ceil(fraction * len(pool)), classes)  # at least one example per class
    if size > len(pool) - classes:
        raise TrainingDataError(
            f"{dataset.path}: {len(pool)} training rows are too few to carve a validation "
            f"share of {fraction:g} with every label on both sides; add rows with split 'val'"
        )
    rows = np.arange(len(pool))
    train_rows, val_rows = train_test_split(
        rows, test_size=size, random_state=seed, stratify=dataset.label_indices(pool)
    )
    return (
        tuple(pool[int(i)] for i in sorted(train_rows)),
        tuple(pool[int(i)] for i in sorted(val_rows)),
    )


def _check_every_label_trains(
    dataset: Dataset, rows: Sequence[Example], minimum: int = 1, why: str = ""
) -> None:
    counts = Counter(example.label for example in rows)
    for label in dataset.labels:
        if counts[label] < minimum:
            reason = f" {why}" if why else ""
            raise TrainingDataError(
                f"{dataset.path}: label {label!r} has {counts[label]} training example(s); "
                f"needs at least {minimum}{reason}"
            )
