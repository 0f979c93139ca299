"""models.training.splits on multilabel datasets: positives per label, and a carved
validation share that never takes a label's last training positive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.data.dataset import load_dataset
from models.training.splits import TrainingDataError, select_splits


def _dataset(root: Path, label_sets: list[list[str]], splits: list[str] | None = None) -> Path:
    rows = []
    for i, tags in enumerate(label_sets):
        (root / f"{i}.png").write_bytes(b"not decoded")
        row: dict[str, object] = {"image": f"{i}.png", "text": "t", "label": tags}
        if splits is not None:
            row["split"] = splits[i]
        rows.append(json.dumps(row))
    path = root / "data.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_carving_keeps_every_labels_last_training_positive(tmp_path: Path) -> None:
    # "rare" is on one row only; half the rows are carved off for validation.
    sets = [["rare", "a"]] + [["a"], ["b"], [], ["a", "b"]] * 5
    dataset = load_dataset(_dataset(tmp_path, sets), task="multilabel")
    for seed in range(10):
        splits = select_splits(dataset, val_fraction=0.5, seed=seed)
        assert len(splits.val) == 11
        assert len(splits.train) == 10
        counts = splits.class_counts(dataset)
        assert counts["train"]["rare"] == 1
        assert all(n >= 1 for n in counts["train"].values())
        assert counts["train"]["a"] + counts["val"]["a"] == 11
        assert splits.val_source == f"random 0.5 of the training rows (seed {seed})"
        empty = splits.empty_label_sets()
        assert empty["train"] + empty["val"] == 5
    again = select_splits(dataset, val_fraction=0.5, seed=3)
    assert again == select_splits(dataset, val_fraction=0.5, seed=3)


def test_every_label_needs_a_training_positive(tmp_path: Path) -> None:
    sets = [["a"], ["b"], ["a", "c"], ["b"]]
    path = _dataset(tmp_path, sets, ["train", "train", "val", "val"])
    dataset = load_dataset(path, task="multilabel")
    with pytest.raises(TrainingDataError, match="label 'c' has 0 positive training example"):
        select_splits(dataset)


def test_no_row_can_be_carved(tmp_path: Path) -> None:
    # Every row carries a label no other row has: moving any would leave it untrained.
    dataset = load_dataset(_dataset(tmp_path, [["a"], ["b"]]), task="multilabel")
    with pytest.raises(TrainingDataError, match="no training row can validate"):
        select_splits(dataset, val_fraction=0.5)
