"""Small multilabel image+text datasets for the tiny bundles (``write_multilabel_dataset``).

Each item carries each tag with that tag's rate, so some items carry none and some several.
Its image lights one colour channel per tag it shows (the ``i``-th tag on channel ``i % 3``, the
others dark: the tiny image encoder averages each channel) and its text names the tags it says,
with one filler word; each tag is flipped with probability ``noise`` in the image and,
independently, in the text, so neither modality alone is perfect.

With the tiny bundle's labels (``LABEL_RATES``: cat, dog, bird) a head can learn the tags, as
``train-head``'s tests need. The tiny multilabel bundle's weights are random, so for its tags
(``TAG_RATES``) only the variety of inputs and label sets matters; a tag given rate 0 is on no
item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tests.support.synthetic_dataset import FILLERS, noisy_image
from tests.support.tiny_bundle import LABELS, TAGS

# The tiny bundle's labels, in its order; bird is rarer: pos_weight 4 in expectation.
LABEL_RATES = dict(zip(LABELS, (0.5, 0.4, 0.2), strict=True))
# The tiny multilabel bundle's tags, in its order.
TAG_RATES = dict.fromkeys(TAGS, 0.4)
_DARK, _LIT = 60, 200


def write_multilabel_dataset(
    root: Path,
    per_split: Mapping[str, int] | None = None,
    *,
    rates: Mapping[str, float] = LABEL_RATES,
    noise: float = 0.1,
    seed: int = 0,
    with_split: bool = True,
    csv: bool = False,
) -> Path:
    """Write PNGs and a multilabel ``data.jsonl`` or (``csv``) ``data.csv`` under ``root``;
    return its path.

    ``per_split`` gives the number of items of each split (default 90 train, 45 val); the
    ``split`` column is left out without ``with_split``. ``rates`` maps each tag, in column
    order, to the chance that an item carries it. Label sets alternate between the two JSONL
    forms the loader reads, a list and a ``|``-separated string; a CSV has the second.
    """
    per_split = per_split or {"train": 90, "val": 45}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count in per_split.items():
        for i in range(count):
            tags = [tag for tag, rate in rates.items() if rng.random() < rate]
            seen = [tag for tag in rates if (tag in tags) != (rng.random() < noise)]
            said = [tag for tag in rates if (tag in tags) != (rng.random() < noise)]
            lit = {j % 3 for j, tag in enumerate(rates) if tag in seen}
            colour = tuple(_LIT if channel in lit else _DARK for channel in range(3))
            name = f"{split}-{i}.png"
            noisy_image((colour[0], colour[1], colour[2]), rng).save(root / name)
            words = [str(rng.choice(FILLERS)), *said]
            text = " ".join(str(word) for word in rng.permutation(words))
            rows.append({"image": name, "text": text, "label": tags, "split": split})
    columns = ["image", "text", "label", *(["split"] if with_split else [])]
    if not csv:
        path = root / "data.jsonl"
        kept = [
            {column: row[column] for column in columns}
            | ({} if n % 2 else {"label": "|".join(row["label"])})
            for n, row in enumerate(rows)
        ]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        return path
    lines = [",".join(columns)]
    for row in rows:
        values = row | {"label": "|".join(row["label"])}
        lines.append(",".join(str(values[column]) for column in columns))
    path = root / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
