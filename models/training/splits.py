"""Which dataset rows ``train-head`` trains and validates on.

Rows with split ``train`` (or no split) train; rows with split ``val`` validate. Without any
``val`` row, a seeded, stratified share of the training rows validates instead. ``test`` rows
are never used: they are for ``evaluate``.

Multilabel datasets count an example towards every label of its set (its positives). Every
label needs a positive in train. Label sets are not stratified (sklearn stratifies single
labels only): the carved validation share is a seeded random draw that skips any row whose
move would leave one of its labels without a training positive.
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
            found = _label_counts(dataset, rows)
            counts[name] = {label: found[label] for label in dataset.labels}
        return counts

    def empty_label_sets(self) -> dict[str, int]:
        """Multilabel: examples with no label at all, in each split."""
        return {
            name: sum(1 for example in rows if not example.tags)
            for name, rows in (("train", self.train), ("val", self.val))
        }


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
        kind = "random" if dataset.multilabel else "stratified"
        source = f"{kind} {val_fraction:g} of the training rows (seed {seed})"
        splits = TrainingSplits(train, carved, test, source)
    _check_every_label_trains(dataset, splits.train)
    return splits


def _carve(
    dataset: Dataset, pool: Sequence[Example], fraction: float, seed: int
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    if not 0 < fraction < 1:
        raise TrainingDataError(f"the validation fraction must be in (0, 1), got {fraction}")
    if dataset.multilabel:
        return _carve_multilabel(dataset, pool, fraction, seed)
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


def _carve_multilabel(
    dataset: Dataset, pool: Sequence[Example], fraction: float, seed: int
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    _check_every_label_trains(dataset, pool)
    size = math.ceil(fraction * len(pool))
    if size > len(pool) - 1:
        raise TrainingDataError(
            f"{dataset.path}: {len(pool)} training rows are too few to carve a validation "
            f"share of {fraction:g}; add rows with split 'val'"
        )
    remaining = _label_counts(dataset, pool)
    chosen: set[int] = set()
    for i in np.random.default_rng(seed).permutation(len(pool)).tolist():
        if len(chosen) == size:
            break
        tags = pool[i].tags
        if all(remaining[tag] > 1 for tag in tags):  # each keeps a training positive
            chosen.add(i)
            remaining.subtract(tags)
    if not chosen:
        raise TrainingDataError(
            f"{dataset.path}: no training row can validate without leaving a label with no "
            "training positive; add rows with split 'val'"
        )
    return (
        tuple(e for i, e in enumerate(pool) if i not in chosen),
        tuple(e for i, e in enumerate(pool) if i in chosen),
    )


def _label_counts(dataset: Dataset, rows: Sequence[Example]) -> Counter[str]:
    """Examples per label: of each class, or (multilabel) carrying each label."""
    if dataset.multilabel:
        return Counter(tag for example in rows for tag in example.tags)
    return Counter(example.label for example in rows)


def _check_every_label_trains(
    dataset: Dataset, rows: Sequence[Example], minimum: int = 1, why: str = ""
) -> None:
    counts = _label_counts(dataset, rows)
    kind = "positive training example(s)" if dataset.multilabel else "training example(s)"
    for label in dataset.labels:
        if counts[label] < minimum:
            reason = f" {why}" if why else ""
            raise TrainingDataError(
                f"{dataset.path}: label {label!r} has {counts[label]} {kind}; "
                f"needs at least {minimum}{reason}"
            )
