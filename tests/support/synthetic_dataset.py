"""A small labelled image+text dataset for the tiny bundle (labels cat/dog/bird), where the
image colour and the text's words both carry the label, each with some noise. The multilabel
counterpart is ``tests.support.multilabel_dataset``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.tiny_bundle import LABELS

# The tiny image encoder averages each colour channel, so the colour is what it sees.
COLOURS = {"cat": (200, 60, 60), "dog": (60, 200, 60), "bird": (60, 60, 200)}
FILLERS = ["a", "the", "photo"]


def noisy_image(colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
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
            noisy_image(COLOURS[seen_colour], rng).save(root / name)
            row = {"image": name, "text": _text(said, rng), "label": label}
            if with_split:
                row["split"] = split
            rows.append(row)
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _other(label: str, rng: np.random.Generator) -> str:
    return str(rng.choice([other for other in LABELS if other != label]))
