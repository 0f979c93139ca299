"""The labelled image+text dataset format shared by ``train-head`` and ``evaluate``.

A dataset is a CSV (with a header row) or JSONL file (one JSON object per line) with the fields
``image`` (path relative to the image root), ``text``, ``label`` and optionally ``split``
(``train``, ``val`` or ``test``). Unknown fields are rejected, so a misspelt ``split`` column
is an error rather than silently ignored. Every error names the file, the line and the field.

A ``multilabel`` dataset's ``label`` holds the item's set of labels: separated by ``|``
(``LABEL_SEPARATOR``) in a CSV, or a ``|``-separated string or a JSON list of strings in
JSONL. The set may be empty (an empty cell, ``""`` or ``[]``); blanks around a label are
ignored, and a label named twice counts once.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.bundle.manifest import LABEL_SEPARATOR

SPLITS = ("train", "val", "test")
REQUIRED_FIELDS = ("image", "text", "label")
FIELDS = (*REQUIRED_FIELDS, "split")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TASKS = ("multiclass", "multilabel")
Task = Literal["multiclass", "multilabel"]


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Example:
    """One labelled example. ``image`` is the resolved path; ``line`` is 1-based in the file.
    ``label`` is the class of a multiclass example; ``tags`` the label set of a multilabel one
    (whose ``label`` is then the labels joined by ``|``)."""

    image: Path
    text: str
    label: str
    split: str | None
    line: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """The examples of one file, in file order, and the label set in a stable order."""

    path: Path
    examples: tuple[Example, ...]
    labels: tuple[str, ...]
    task: Task = "multiclass"

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def label_matrix(self, examples: Sequence[Example] | None = None) -> np.ndarray:
        """Multilabel targets: float32 [N, labels], 1 where the example has the label."""
        index = {label: i for i, label in enumerate(self.labels)}
        chosen = self.examples if examples is None else examples
        matrix = np.zeros((len(chosen), len(self.labels)), dtype=np.float32)
        for row, example in enumerate(chosen):
            for tag in example.tags:
                matrix[row, index[tag]] = 1.0
        return matrix

    def label_indices(self, examples: Sequence[Example] | None = None) -> np.ndarray:
        """Each example's position in ``labels`` (int64), for all examples or the given ones."""
        if self.multilabel:
            raise ValueError("a multilabel dataset has label sets: use label_matrix")
        index = {label: i for i, label in enumerate(self.labels)}
        chosen = self.examples if examples is None else examples
        return np.asarray([index[example.label] for example in chosen], dtype=np.int64)

    def split(self, name: str) -> tuple[Example, ...]:
        """The examples whose ``split`` is ``name`` (one of ``SPLITS``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return tuple(example for example in self.examples if example.split == name)


def load_dataset(
    path: str | Path,
    image_root: str | Path | None = None,
    labels: Sequence[str] | None = None,
    task: Task = "multiclass",
) -> Dataset:
    """Read and validate a dataset file (``task``: how its ``label`` field reads).

    ``image_root`` defaults to the file's directory; every image must exist under it.
    ``labels``, if given, fixes the label order (and may name classes absent from the file);
    every example's label must be one of them. Otherwise the labels are the sorted distinct
    labels of the file. Either way there must be at least two.
    """
    path = Path(path)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(f"{path}: unsupported file type; expected one of {', '.join(_SUFFIXES)}")
    root = path.parent if image_root is None else Path(image_root)
    if not root.is_dir():
        raise DatasetError(f"{path}: image root {root} is not a directory")
    if task not in TASKS:
        raise DatasetError(f"{path}: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    allowed = _check_labels(path, labels, task)
    rows = _csv_rows(path) if kind == "csv" else _jsonl_rows(path)
    examples = tuple(_example(path, line, row, root, allowed, task) for line, row in rows)
    if not examples:
        raise DatasetError(f"{path}: no examples")
    found = {tag for e in examples for tag in e.tags} if task == "multilabel" else None
    if found is None:
        found = {e.label for e in examples}
    label_set = tuple(labels) if labels is not None else tuple(sorted(found))
    if len(label_set) < 2:
        raise DatasetError(f"{path}: needs at least 2 labels, found {list(label_set)}")
    return Dataset(path=path, examples=examples, labels=label_set, task=task)


def _check_labels(path: Path, labels: Sequence[str] | None, task: Task) -> frozenset[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise DatasetError(f"{path}: labels must be a list of names, not a string")
    if any(not label.strip() for label in labels):
        raise DatasetError(f"{path}: the labels list contains a blank label")
    if len(set(labels)) != len(labels):
        raise DatasetError(f"{path}: the labels list contains duplicates")
    if task == "multilabel" and any(LABEL_SEPARATOR in label for label in labels):
        raise DatasetError(f"{path}: a multilabel label must not contain {LABEL_SEPARATOR!r}")
    return frozenset(labels)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None


def _csv_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.reader(_read_text(path).splitlines(keepends=True), strict=True)
    try:
        header = next(reader, [])
        if not header:
            raise DatasetError(f"{path}: line 1: expected a header row")
        if len(set(header)) != len(header):
            raise DatasetError(f"{path}: line 1: duplicate column in the header")
        _check_fields(path, 1, header)
        end = reader.line_num
        for values in reader:
            # A row starts after the previous one ended (quoted values may span lines).
            start, end = end + 1, reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise DatasetError(
                    f"{path}: line {start}: {len(values)} values, expected {len(header)}"
                )
            yield start, dict(zip(header, values, strict=True))
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for line, raw in enumerate(_read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {line}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: line {line}: expected a JSON object")
        _check_fields(path, line, row)
        yield line, row


def _check_fields(path: Path, line: int, fields: Sequence[str] | Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise DatasetError(
            f"{path}: line {line}: unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}"
        )
    for field in REQUIRED_FIELDS:
        if field not in fields:
            raise DatasetError(f"{path}: line {line}: missing field {field!r}")


def _string(path: Path, line: int, row: Mapping[str, Any], field: str) -> str:
    value = row[field]
    if not isinstance(value, str):
        raise DatasetError(f"{path}: line {line}: field {field!r} must be a string")
    if not value.strip():
        raise DatasetError(f"{path}: line {line}: field {field!r} is empty")
    return value


def _tags(path: Path, line: int, row: Mapping[str, Any]) -> tuple[str, ...]:
    """A multilabel example's label set, in first-mention order."""
    value = row["label"]
    if isinstance(value, str):
        names = value.split(LABEL_SEPARATOR) if value.strip() else []
    elif isinstance(value, list) and all(isinstance(name, str) for name in value):
        names = value
    else:
        raise DatasetError(
            f"{path}: line {line}: field 'label' must be a '{LABEL_SEPARATOR}'-separated string "
            "or a list of strings"
        )
    tags = [name.strip() for name in names]
    if any(not tag for tag in tags):
        raise DatasetError(f"{path}: line {line}: field 'label' names a blank label")
    if any(LABEL_SEPARATOR in tag for tag in tags):
        raise DatasetError(
            f"{path}: line {line}: field 'label': a label must not contain {LABEL_SEPARATOR!r}"
        )
    return tuple(dict.fromkeys(tags))


def _example(
    path: Path,
    line: int,
    row: Mapping[str, Any],
    root: Path,
    allowed: frozenset[str] | None,
    task: Task = "multiclass",
) -> Example:
    image_name = _string(path, line, row, "image")
    relative = Path(image_name)
    if relative.is_absolute():
        raise DatasetError(
            f"{path}: line {line}: field 'image' must be relative to the image root {root}"
        )
    image = root / relative
    if not image.is_file():
        raise DatasetError(f"{path}: line {line}: field 'image': {image} does not exist")
    if task == "multilabel":
        tags = _tags(path, line, row)
        label = LABEL_SEPARATOR.join(tags)
        unknown = [tag for tag in tags if allowed is not None and tag not in allowed]
        if unknown:
            raise DatasetError(
                f"{path}: line {line}: field 'label': {unknown[0]!r} is not in the labels"
            )
    else:
        tags = ()
        label = _string(path, line, row, "label")
        if allowed is not None and label not in allowed:
            raise DatasetError(
                f"{path}: line {line}: field 'label': {label!r} is not in the labels"
            )
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise DatasetError(
            f"{path}: line {line}: field 'split': unknown split {split!r}; "
            f"expected one of {', '.join(SPLITS)}"
        )
    return Example(
        image=image,
        text=_string(path, line, row, "text"),
        label=label,
        split=split,
        line=line,
        tags=tags,
    )
