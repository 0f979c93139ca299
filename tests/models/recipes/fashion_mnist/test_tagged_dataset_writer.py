"""models.recipes.fashion_mnist.tagged_dataset_writer: the multilabel dataset, from small
synthetic arrays."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from app.bundle.manifest import LABEL_SEPARATOR
from models.data.dataset import load_dataset
from models.recipes.fashion_mnist import attribute_tags as at
from models.recipes.fashion_mnist import dataset_writer
from models.recipes.fashion_mnist import tagged_dataset_writer as tw
from models.recipes.fashion_mnist.raw_data import LABELS, png_bytes

TRAIN_IMAGES, TEST_IMAGES = 60, 20

Arrays = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


@pytest.fixture
def arrays() -> Arrays:
    rng = np.random.default_rng(0)
    images, labels = {}, {}
    for source, count in (("train", TRAIN_IMAGES), ("t10k", TEST_IMAGES)):
        images[source] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels[source] = np.arange(count, dtype=np.int64) % len(LABELS)
    return images, labels


def write(
    out: Path, arrays: Arrays, *, seed: int = 0, test_limit: int | None = None
) -> tw.TaggedWritten:
    images, labels = arrays
    return tw.write_tagged(
        out, images, labels, val_size=10, train_limit=30, test_limit=test_limit, seed=seed
    )


def csv_rows(out: Path) -> list[dict[str, str]]:
    with (out / tw.DATASET_FILE).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_csv_round_trips_through_load_dataset(arrays: Arrays, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = write(out, arrays, test_limit=15)
    dataset = load_dataset(out / tw.DATASET_FILE, labels=at.TAGS, task="multilabel")
    assert dataset.labels == at.TAGS
    assert {s: len(dataset.split(s)) for s in tw.SPLITS} == {"train": 30, "val": 10, "test": 15}
    assert len(dataset.examples) == len(result.rows)
    for example, row in zip(dataset.examples, result.rows, strict=True):
        assert example.tags == tuple(row.label.split(LABEL_SEPARATOR))
        assert example.text == row.text
        assert example.split == row.split
        assert example.image == out / row.image
    # The header and columns are exactly the documented ones.
    first_line = (out / tw.DATASET_FILE).read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "image,text,label,split"


def test_rows_images_and_splits_are_the_default_datasets(arrays: Arrays, tmp_path: Path) -> None:
    images, labels = arrays
    out = tmp_path / "out"
    result = write(out, arrays)
    chosen = dataset_writer.chosen_indices(TRAIN_IMAGES, TEST_IMAGES, 10, 30, None, seed=0)
    default_rows = dataset_writer.build_rows(labels, chosen, seed=0)
    assert [(r.image, r.split) for r in result.rows] == [(r.image, r.split) for r in default_rows]
    for row in result.rows:
        assert (out / row.image).read_bytes() == png_bytes(images[row.source][row.index])


def test_class_tags_follow_their_rules_and_no_set_is_empty(arrays: Arrays, tmp_path: Path) -> None:
    _, labels = arrays
    result = write(tmp_path / "out", arrays)
    for row in result.rows:
        tags = row.label.split(LABEL_SEPARATOR)
        assert row.label
        assert all(tag in at.TAGS and LABEL_SEPARATOR not in tag for tag in tags)
        assert tags == sorted(tags, key=at.TAGS.index)
        class_name = LABELS[int(labels[row.source][row.index])]
        for tag in at.CLASS_TAGS:
            assert (tag in tags) == (class_name in at.CLASS_TAG_RULES[tag]), (row, tag)


def test_output_is_deterministic_and_independent_of_the_subset(
    arrays: Arrays, tmp_path: Path
) -> None:
    write(tmp_path / "a", arrays)
    write(tmp_path / "b", arrays)
    write(tmp_path / "c", arrays, seed=1)
    write(tmp_path / "d", arrays, test_limit=5)
    for name in (tw.DATASET_FILE, tw.STATISTICS_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    first = csv_rows(tmp_path / "a")
    assert [r["text"] for r in first] != [r["text"] for r in csv_rows(tmp_path / "c")]
    by_image = {r["image"]: r for r in first}
    smaller = csv_rows(tmp_path / "d")
    assert len(smaller) == 45
    assert all(by_image[r["image"]] == r for r in smaller)


def test_tags_do_not_depend_on_the_title_stream(arrays: Arrays) -> None:
    _, labels = arrays
    items = tw.source_items("train", labels["train"], seed=0)
    attributes = at.draw_attributes(labels["train"], dataset_writer.stream(0, tw.STREAM_TRAIN_TAGS))
    assert items.tags == at.tag_sets(labels["train"], attributes)


def test_statistics(arrays: Arrays, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = write(out, arrays)
    stats = result.statistics
    assert stats["tags"] == list(at.TAGS)
    assert set(stats["splits"]) == {"train", "val", "test", "all"}
    for split in ("train", "val", "test", "all"):
        rows = [r for r in result.rows if split in (r.split, "all")]
        entry = stats["splits"][split]
        assert entry["examples"] == len(rows)
        assert entry["empty"] == 0
        for tag in at.TAGS:
            positives = sum(tag in r.label.split(LABEL_SEPARATOR) for r in rows)
            assert entry["positives"][tag] == positives
            assert entry["frequency"][tag] == pytest.approx(positives / len(rows))
            stated = entry["stated_in_title"][tag]
            assert stated["positives"] <= positives
            if tag in at.ATTRIBUTE_TAGS:
                assert stated["negatives"] == 0  # a title never states an attribute falsely
        total = sum(len(r.label.split(LABEL_SEPARATOR)) for r in rows)
        assert entry["mean_tags"] == pytest.approx(total / len(rows))
    report = json.loads((out / tw.STATISTICS_FILE).read_text(encoding="utf-8"))
    assert report["statistics"] == stats
    assert report["sizes"] == {"train": 30, "val": 10, "test": TEST_IMAGES}
    assert [entry["tag"] for entry in report["tag_table"]] == list(at.TAGS)


def test_tag_table() -> None:
    table = tw.tag_table()
    assert [entry["tag"] for entry in table] == list(at.TAGS)
    for entry in table:
        assert entry["source"] in ("class", "title")
        assert 0 < entry["prior"] < 1
        assert set(entry["text"]) == {"stated_if_positive", "stated_if_negative", "how"}
    markdown = tw.tag_table_markdown().splitlines()
    assert len(markdown) == 2 + len(at.TAGS)
    assert markdown[2].startswith("| `footwear` | class |")
    # Every row has the header's six cells: a "|" inside a cell is escaped.
    for line in markdown:
        assert len(line.replace("\\|", "").strip("|").split("|")) == 6, line


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = np.asarray([magic, *array.shape], dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_main_reads_the_idx_files(
    arrays: Arrays, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = arrays
    data_dir = tmp_path / "fashion"
    data_dir.mkdir()
    for source in ("train", "t10k"):
        write_idx(data_dir / f"{source}-images-idx3-ubyte.gz", 0x803, images[source])
        write_idx(data_dir / f"{source}-labels-idx1-ubyte.gz", 0x801, labels[source])
    out = tmp_path / "out"
    args = ["--out", str(out), "--data-dir", str(data_dir), "--train-limit", "30"]
    assert tw.main([*args, "--val-size", "10"]) == 0
    assert "60 rows (train 30, val 10, test 20)" in capsys.readouterr().out
    write(tmp_path / "direct", arrays)
    direct = (tmp_path / "direct" / tw.DATASET_FILE).read_bytes()
    assert (out / tw.DATASET_FILE).read_bytes() == direct
    assert not list(out.rglob("*.partial"))
