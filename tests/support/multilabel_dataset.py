"""A small multilabel image+text dataset for the tiny multilabel bundle (labels ``TAGS``).

The tiny bundle's weights are random, so the label sets need not follow the inputs: what matters
is that the images and texts differ (so do the head's probabilities), that some items have no
label, some several, and that a label can be left out entirely (``absent``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.tiny_bundle import TAGS, WORDS

SPLIT_OF = {0: "train", 1: "val"}  # i % 5 -> split; the other 3 of every 5 rows are test rows


def write_multilabel_dataset(
    root: Path,
    count: int = 40,
    *,
    seed: int = 0,
    absent: Sequence[str] = (),
    with_split: bool = True,
) -> Path:
    """Write PNGs and ``data.jsonl`` under ``root``; return the JSONL path.

    Each item has each tag not in ``absent`` with probability 0.4; every seventh item has none.
    Label sets alternate between the two JSONL forms the loader reads: a list and a
    ``|``-separated string.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    allowed = [tag for tag in TAGS if tag not in absent]
    rows = []
    for i in range(count):
        tags = [] if i % 7 == 3 else [tag for tag in allowed if rng.random() < 0.4]
        # Plain colours far apart: the tiny image encoder averages each channel.
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        name = f"{i}.png"
        Image.new("RGB", (36 + i % 9, 40), colour).save(root / name)
        words = rng.choice(WORDS, size=int(rng.integers(1, 5)))
        label: list[str] | str = tags if i % 2 else "|".join(tags)
        row: dict[str, object] = {"image": name, "text": " ".join(words), "label": label}
        if with_split:
            row["split"] = SPLIT_OF.get(i % 5, "test")
        rows.append(row)
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
