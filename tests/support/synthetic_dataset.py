"""A small labelled image+text dataset for the tiny bundle (labels cat/dog/bird), where the
image colour and the text's words both carry the label, each with some noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.tiny_bundle import LABELS

# The tiny image encoder averages each colour channel, so the colour is what it sees.
COLOURS = {"cat": (200, 60, 60), "dog": (60, 200, 60), "bird": (60, 60, 200)}
FILLERS = ["a", "the", "photo"]


def _image(colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    base = np.asarray(colour, dtype=np.float64) + rng.normal(0, 25, 3)
    pixels = base + rng.normal(0, 30, (40, 40, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _text(label: str, rng: np.random.Generator) -> str:
    # The tiny text encoder averages word vectors: one filler word keeps the label word heard.
    filler = str(rng.choice(FILLERS))
    return f"{filler} {label}" if rng.random() < 0.5 else f"{label} {filler}"


def write_dataset(
    root: Path,
    per_split: dict[str, int] | None = None,
    *,
    noise: float = 0.2,
    seed: int = 0,
    with_split: bool = True,
) -> Path:
    """Write PNGs and ``data.jsonl`` under ``root``; return the JSONL path.

    ``per_split`` gives the number of examples of each split (labels cycle through
    ``LABELS``). With probability ``noise`` each, an image gets another label's colour and a
    text names another label, independently, so neither modality alone is perfect.
    """
    per_split = per_split or {"train": 60, "val": 30}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in per_split.items():
        for i in range(count):
            label = LABELS[i % len(LABELS)]
            seen_colour = _other(label, rng) if rng.random() < noise else label
            said = _other(label, rng) if rng.random() < noise else label
            name = f"{split}-{i}.png"
            _image(COLOURS[seen_colour], rng).save(root / name)
            row = {"image": name, "text": _text(said, rng), "label": label}
            if with_split:
                row["split"] = split
            rows.append(row)
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _other(label: str, rng: np.random.Generator) -> str:
    return str(rng.choice([other for other in LABELS if other != label]))


# Multilabel: an item shows any set of the animals (tags), each on its own colour channel.
TAG_RATES = {"cat": 0.5, "dog": 0.4, "bird": 0.2}  # bird is rarer: pos_weight 4 in expectation
_DARK, _LIT = 60, 200


def write_multilabel_dataset(
    root: Path,
    per_split: dict[str, int] | None = None,
    *,
    noise: float = 0.1,
    seed: int = 0,
    with_split: bool = True,
    csv: bool = False,
) -> Path:
    """Write PNGs and a multilabel ``data.jsonl`` (label sets as JSON lists) or ``data.csv``
    ('|'-separated) under ``root``; return its path.

    Each tag of ``LABELS`` is on an item with its rate in ``TAG_RATES`` (so some items have
    none). The image lights the tag's colour channel (cat red, dog green, bird blue) and the
    text names it; each tag is flipped with probability ``noise`` in the image and,
    independently, in the text.
    """
    per_split = per_split or {"train": 90, "val": 45}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in per_split.items():
        for i in range(count):
            tags = [tag for tag in LABELS if rng.random() < TAG_RATES[tag]]
            seen = [tag for tag in LABELS if (tag in tags) != (rng.random() < noise)]
            said = [tag for tag in LABELS if (tag in tags) != (rng.random() < noise)]
            colour = tuple(_LIT if tag in seen else _DARK for tag in ("cat", "dog", "bird"))
            name = f"{split}-{i}.png"
            _image((colour[0], colour[1], colour[2]), rng).save(root / name)
            words = [str(rng.choice(FILLERS)), *said]
            text = " ".join(str(word) for word in rng.permutation(words))
            rows.append({"image": name, "text": text, "label": tags, "split": split})
    columns = ["image", "text", "label", *(["split"] if with_split else [])]
    if not csv:
        path = root / "data.jsonl"
        kept = [{column: row[column] for column in columns} for row in rows]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        return path
    lines = [",".join(columns)]
    for row in rows:
        values = row | {"label": "|".join(row["label"])}
        lines.append(",".join(str(values[column]) for column in columns))
    path = root / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
