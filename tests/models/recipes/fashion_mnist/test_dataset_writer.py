"""models.recipes.fashion_mnist.dataset_writer: Fashion-MNIST written as a labelled dataset, from
tiny fake idx files."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data.dataset import load_dataset
from models.recipes.fashion_mnist import dataset_writer
from models.recipes.fashion_mnist.raw_data import LABELS, load_split

TRAIN_IMAGES, TEST_IMAGES = 40, 12


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = np.asarray([magic, *array.shape], dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN_IMAGES), ("t10k", TEST_IMAGES)):
        images = rng.integers(0, 256, (count, 28, 28))
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", 0x803, images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", 0x801, np.arange(count) % 10)
    return folder


def run(data_dir: Path, out: Path, *extra: str) -> None:
    args = ["--out", str(out), "--data-dir", str(data_dir), "--train-limit", "20"]
    assert dataset_writer.main([*args, "--val-size", "10", *extra]) == 0


def rows(out: Path) -> list[dict[str, str]]:
    lines = (out / dataset_writer.DATASET_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_writes_a_loadable_dataset_with_the_requested_splits(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(data_dir, out, "--test-limit", "8")
    dataset = load_dataset(out / dataset_writer.DATASET_FILE, labels=LABELS)
    assert dataset.labels == LABELS
    splits = {name: dataset.split(name) for name in ("train", "val", "test")}
    assert {name: len(examples) for name, examples in splits.items()} == {
        "train": 20,
        "val": 10,
        "test": 8,
    }
    images = {name: {e.image for e in examples} for name, examples in splits.items()}
    assert not images["train"] & images["val"]
    assert all(e.image.parent.name == "train" for e in splits["train"] + splits["val"])
    assert [e.image.name for e in splits["test"]] == [f"{i:05d}.png" for i in range(8)]
    # The split is train_default_head's, and each row's label is its image's label.
    expected = dataset_writer.split_indices(TRAIN_IMAGES, 10, 20, seed=0)
    for name in ("train", "val"):
        assert [int(e.image.stem) for e in splits[name]] == expected[name].tolist()
    train_labels = load_split("train", data_dir)[1]
    for example in splits["train"]:
        assert example.label == LABELS[train_labels[int(example.image.stem)]]


def test_png_pixels_round_trip_exactly(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(data_dir, out)
    sources = {split: load_split(split, data_dir)[0] for split in ("train", "t10k")}
    for row in rows(out):
        path = out / row["image"]
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            assert image.mode == "L"
            pixels = np.asarray(image)
        np.testing.assert_array_equal(pixels, sources[path.parent.name][int(path.stem)])


def test_texts_are_deterministic_and_independent_of_the_subset(
    data_dir: Path, tmp_path: Path
) -> None:
    run(data_dir, tmp_path / "a")
    run(data_dir, tmp_path / "b")
    run(data_dir, tmp_path / "c", "--seed", "1")
    run(data_dir, tmp_path / "d", "--test-limit", "5")
    first = rows(tmp_path / "a")
    assert first == rows(tmp_path / "b")
    assert [r["text"] for r in first] != [r["text"] for r in rows(tmp_path / "c")]
    text_of = {r["image"]: r["text"] for r in first}
    smaller = rows(tmp_path / "d")
    assert len(smaller) == 35
    assert all(text_of[r["image"]] == r["text"] for r in smaller)


def test_a_second_run_rewrites_no_image(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    run(data_dir, out)
    assert "42 PNGs written, 0 already up to date" in capsys.readouterr().out
    pngs = sorted(out.glob("images/*/*.png"))
    before = {p: p.stat().st_mtime_ns for p in pngs}
    pngs[0].write_bytes(b"stale")
    run(data_dir, out)
    assert "1 PNGs written, 41 already up to date" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in sorted(out.glob("images/*/*.png"))}
    assert [p for p in pngs if after[p] != before[p]] == [pngs[0]]
    assert not list(out.rglob("*.partial"))


def test_rejects_splits_larger_than_the_files(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--val-size"):
        run(data_dir, tmp_path / "out", "--val-size", "25")
    with pytest.raises(SystemExit, match="--test-limit"):
        run(data_dir, tmp_path / "out", "--test-limit", "13")
