"""models.data.dataset: the labelled CSV/JSONL format, and errors that say file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.data.dataset import DatasetError, load_dataset


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        (folder / name).write_bytes(b"not decoded by the loader")
    return folder


def write_csv(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, *rows: dict[str, Any] | str) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_with_default_image_root(images: Path) -> None:
    data = write_csv(
        images / "data.csv",
        "image,text,label,split",
        "a.png,a red shoe,shoe,train",
        'sub/c.png,"a bag, leather",bag,val',
        "b.png,another shoe,shoe,test",
    )
    dataset = load_dataset(data)

    assert dataset.labels == ("bag", "shoe")  # sorted
    assert [e.image for e in dataset.examples] == [
        images / "a.png",
        images / "sub/c.png",
        images / "b.png",
    ]
    assert [e.text for e in dataset.examples] == ["a red shoe", "a bag, leather", "another shoe"]
    assert [e.line for e in dataset.examples] == [2, 3, 4]
    assert dataset.label_indices().tolist() == [1, 0, 1]
    assert dataset.label_indices().dtype == np.int64
    assert [e.image.name for e in dataset.split("val")] == ["c.png"]
    assert dataset.label_indices(dataset.split("train")).tolist() == [1]


def test_jsonl_with_image_root_and_labels_list(tmp_path: Path, images: Path) -> None:
    data = write_jsonl(
        tmp_path / "data.jsonl",
        {"image": "a.png", "text": "shoe", "label": "shoe"},
        "",
        {"image": "b.png", "text": "bag", "label": "bag", "split": None},
    )
    dataset = load_dataset(data, image_root=images, labels=["shoe", "bag", "hat"])

    assert dataset.labels == ("shoe", "bag", "hat")  # as given, absent "hat" kept
    assert [e.line for e in dataset.examples] == [1, 3]  # blank line skipped, still counted
    assert [e.split for e in dataset.examples] == [None, None]
    assert dataset.label_indices().tolist() == [0, 1]


def test_csv_line_numbers_count_multiline_values_and_blank_lines(images: Path) -> None:
    data = write_csv(
        images / "data.csv",
        "image,text,label",
        'a.png,"two',
        'lines",shoe',
        "",
        "b.png,,bag",
    )
    with pytest.raises(DatasetError, match=r"data\.csv: line 5: field 'text' is empty"):
        load_dataset(data)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["image,text", "a.png,x"], "line 1: missing field 'label'"),
        (["image,text,label,splt", "a.png,x,shoe,train"], "line 1: unknown field 'splt'"),
        (["image,text,label,label", "a.png,x,y,z"], "line 1: duplicate column"),
        (["image,text,label", "a.png,x,shoe", "b.png,y,  "], "line 3: field 'label' is empty"),
        (["image,text,label", "missing.png,x,shoe"], "line 2: field 'image': .*missing.png"),
        (["image,text,label", "/abs.png,x,shoe"], "line 2: field 'image' must be relative"),
        (["image,text,label,split", "a.png,x,shoe,dev"], "line 2: field 'split': unknown split"),
        (["image,text,label,split", "a.png,x,shoe,"], "line 2: field 'split': unknown split ''"),
        (["image,text,label", "a.png,x"], "line 2: 2 values, expected 3"),
        (["image,text,label", "a.png,x,shoe,extra"], "line 2: 4 values, expected 3"),
        (["image,text,label", 'a.png,"x,shoe'], "malformed CSV"),
        (["image,text,label", "a.png,x,shoe", "b.png,y,shoe"], r"at least 2 labels.*\['shoe'\]"),
        (["image,text,label"], "no examples"),
    ],
)
def test_csv_errors_name_file_line_and_field(images: Path, lines: list[str], message: str) -> None:
    data = write_csv(images / "bad.csv", *lines)
    with pytest.raises(DatasetError, match=rf"bad\.csv: .*{message}"):
        load_dataset(data)


def test_empty_csv_file(images: Path) -> None:
    (images / "bad.csv").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.csv: line 1: expected a header row"):
        load_dataset(images / "bad.csv")


GOOD = {"image": "a.png", "text": "x", "label": "shoe"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "line 2: invalid JSON"),
        ('["a.png", "x", "shoe"]', "line 2: expected a JSON object"),
        ({"image": "a.png", "label": "bag"}, "line 2: missing field 'text'"),
        ({**GOOD, "label": "bag", "weight": 2}, "line 2: unknown field 'weight'"),
        ({**GOOD, "label": ""}, "line 2: field 'label' is empty"),
        ({**GOOD, "label": 3}, "line 2: field 'label' must be a string"),
        ({**GOOD, "label": "bag", "image": "nope.png"}, "line 2: field 'image': .*nope.png"),
        ({**GOOD, "label": "bag", "split": "Train"}, "line 2: field 'split': unknown split"),
    ],
)
def test_jsonl_errors_name_file_line_and_field(
    images: Path, row: dict[str, Any] | str, message: str
) -> None:
    data = write_jsonl(images / "bad.jsonl", GOOD, row)
    with pytest.raises(DatasetError, match=rf"bad\.jsonl: {message}"):
        load_dataset(data)


def test_label_outside_the_labels_list(images: Path) -> None:
    data = write_jsonl(images / "d.jsonl", GOOD, {**GOOD, "label": "hat"})
    with pytest.raises(DatasetError, match=r"line 2: field 'label': 'hat' is not in the labels"):
        load_dataset(data, labels=["shoe", "bag"])


@pytest.mark.parametrize(
    ("labels", "message"),
    [(["shoe", "shoe"], "duplicates"), (["shoe", " "], "blank label"), ("shoe", "not a string")],
)
def test_bad_labels_list(images: Path, labels: list[str] | str, message: str) -> None:
    data = write_jsonl(images / "d.jsonl", GOOD)
    with pytest.raises(DatasetError, match=message):
        load_dataset(data, labels=labels)


def test_file_level_errors(tmp_path: Path, images: Path) -> None:
    with pytest.raises(DatasetError, match=r"data\.txt: unsupported file type"):
        load_dataset(tmp_path / "data.txt")
    with pytest.raises(DatasetError, match=r"absent\.csv: file not found"):
        load_dataset(tmp_path / "absent.csv")
    (tmp_path / "latin1.csv").write_bytes("image,text,label\na.png,caf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.csv: not UTF-8"):
        load_dataset(tmp_path / "latin1.csv", image_root=images)
    data = write_jsonl(tmp_path / "d.jsonl", GOOD)
    with pytest.raises(DatasetError, match="image root .* is not a directory"):
        load_dataset(data, image_root=tmp_path / "nowhere")


def test_csv_with_byte_order_mark(images: Path) -> None:
    data = images / "excel.csv"
    data.write_bytes("image,text,label\na.png,x,shoe\nb.png,y,bag\n".encode("utf-8-sig"))
    assert load_dataset(data).labels == ("bag", "shoe")


def test_unknown_split_name_in_query(images: Path) -> None:
    dataset = load_dataset(write_jsonl(images / "d.jsonl", GOOD, {**GOOD, "label": "bag"}))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        dataset.split("dev")


def test_multilabel_csv_label_sets(images: Path) -> None:
    data = write_csv(
        images / "tags.csv",
        "image,text,label,split",
        "a.png,red shoe,shoe|red,train",
        "b.png,nothing,,train",  # the empty set
        "sub/c.png,red bag, bag | red |bag ,val",  # blanks around labels; repeats count once
    )
    dataset = load_dataset(data, task="multilabel")

    assert dataset.multilabel
    assert dataset.labels == ("bag", "red", "shoe")  # sorted, from every set
    assert [e.tags for e in dataset.examples] == [("shoe", "red"), (), ("bag", "red")]
    assert [e.label for e in dataset.examples] == ["shoe|red", "", "bag|red"]
    matrix = dataset.label_matrix()
    assert matrix.dtype == np.float32
    assert matrix.tolist() == [[0, 1, 1], [0, 0, 0], [1, 1, 0]]
    assert dataset.label_matrix(dataset.split("val")).tolist() == [[1, 1, 0]]
    with pytest.raises(ValueError, match="multilabel dataset has label sets: use label_matrix"):
        dataset.label_indices()


def test_multilabel_jsonl_lists_strings_and_empty_sets(tmp_path: Path, images: Path) -> None:
    data = write_jsonl(
        tmp_path / "tags.jsonl",
        {"image": "a.png", "text": "x", "label": ["shoe", "red"]},
        {"image": "b.png", "text": "y", "label": "bag|red"},
        {"image": "a.png", "text": "z", "label": []},
        {"image": "b.png", "text": "w", "label": ""},
    )
    dataset = load_dataset(
        data, image_root=images, labels=["red", "shoe", "bag"], task="multilabel"
    )

    assert dataset.labels == ("red", "shoe", "bag")  # as given
    assert [e.tags for e in dataset.examples] == [("shoe", "red"), ("bag", "red"), (), ()]
    assert dataset.label_matrix().tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (["shoe", "hat"], r"line 2: field 'label': 'hat' is not in the labels"),
        ("shoe||bag", r"line 2: field 'label' names a blank label"),
        (["shoe", "  "], r"line 2: field 'label' names a blank label"),
        (["shoe|bag"], r"line 2: field 'label': a label must not contain '\|'"),
        (["shoe", 3], r"line 2: field 'label' must be a '\|'-separated string or a list"),
        ({"shoe": 1}, r"line 2: field 'label' must be a '\|'-separated string or a list"),
    ],
)
def test_multilabel_errors_name_file_line_and_field(images: Path, label: Any, message: str) -> None:
    data = write_jsonl(images / "bad.jsonl", GOOD, {**GOOD, "label": label})
    with pytest.raises(DatasetError, match=rf"bad\.jsonl: {message}"):
        load_dataset(data, labels=["shoe", "bag"], task="multilabel")


def test_multilabel_labels_list_and_task_checks(images: Path) -> None:
    data = write_jsonl(images / "d.jsonl", GOOD, {**GOOD, "label": "bag"})
    with pytest.raises(DatasetError, match=r"a multilabel label must not contain '\|'"):
        load_dataset(data, labels=["shoe|bag", "hat"], task="multilabel")
    with pytest.raises(DatasetError, match="unknown task 'tags'"):
        load_dataset(data, task="tags")  # type: ignore[arg-type]
    # Multiclass reads a '|' as part of one class name, as before.
    multiclass = load_dataset(write_jsonl(images / "m.jsonl", GOOD, {**GOOD, "label": "a|b"}))
    assert multiclass.labels == ("a|b", "shoe")
    assert not multiclass.multilabel
