"""Synthetic, deliberately weak product descriptions for Fashion-MNIST items.

Fashion-MNIST has no text, so the default bundle's text modality is generated. To keep the
fusion demo honest, the texts carry only *coarse* and sometimes *wrong* information, like
noisy marketplace titles. The exact scheme (``describe(label_index, rng)``):

1. Each label belongs to one coarse group (``GROUP_OF_LABEL``):

   - ``tops``: T-shirt/top, Pullover, Coat, Shirt
   - ``dress``: Dress
   - ``legs``: Trouser
   - ``footwear``: Sandal, Sneaker, Ankle boot
   - ``bag``: Bag

2. With probability ``NOISE_PROBABILITY`` (0.10) the stated group is replaced by one of the
   other four groups, chosen uniformly (so exactly that share of texts names a wrong group).
3. A noun for the stated group is drawn uniformly from ``GROUP_NOUNS`` (e.g. "upper-body
   garment" for tops). No noun names or hints at a fine class: "shirt", "coat", "sneaker",
   "boot", "sandal" and the like never appear.
4. A colour, a material, a style and an occasion are drawn uniformly and independently of the
   label (``COLOURS``, ``MATERIALS``, ``STYLES``, ``OCCASIONS``); they are pure distractors.
5. A template is drawn uniformly from ``TEMPLATES`` and filled in.

Consequently the text depends on the label only through its group: P(text | label) =
P(text | group(label)). With balanced classes the best possible text-only accuracy is
``bayes_text_accuracy()`` = 0.45 (the text identifies the group 90% of the time; within tops
a text cannot tell 4 classes apart, within footwear 3). Every draw comes from the given
``numpy.random.Generator`` in a fixed order, so a seeded generator reproduces the texts exactly.
"""

from __future__ import annotations

import re

import numpy as np

from models.fashion_mnist import LABELS

NOISE_PROBABILITY = 0.10

GROUP_OF_LABEL: tuple[str, ...] = (
    "tops",  # T-shirt/top
    "legs",  # Trouser
    "tops",  # Pullover
    "dress",  # Dress
    "tops",  # Coat
    "footwear",  # Sandal
    "tops",  # Shirt
    "footwear",  # Sneaker
    "bag",  # Bag
    "footwear",  # Ankle boot
)
GROUPS: tuple[str, ...] = ("tops", "dress", "legs", "footwear", "bag")

GROUP_NOUNS: dict[str, tuple[str, ...]] = {
    "tops": ("top", "upper-body garment", "piece of topwear", "upper-body layer"),
    "dress": ("dress", "frock", "one-piece dress", "day dress"),
    "legs": ("trousers", "pants", "legwear", "pair of trousers"),
    "footwear": ("footwear", "pair of shoes", "shoes", "footwear item"),
    "bag": ("bag", "carry-all", "everyday bag", "handheld bag"),
}
COLOURS = ("black", "white", "navy", "grey", "beige", "olive", "burgundy", "pastel pink")
MATERIALS = ("cotton", "leather", "wool", "denim", "linen", "polyester", "canvas", "suede")
STYLES = ("classic", "modern", "minimalist", "vintage-inspired", "casual", "premium")
OCCASIONS = (
    "for everyday wear",
    "for the office",
    "for weekends",
    "for travel",
    "for evenings out",
    "for the holidays",
)
TEMPLATES = (
    "{colour} {material} {noun}, {style} look, {occasion}",
    "{style} {noun} in {colour} {material}",
    "{noun} - {colour}, {material}, {occasion}",
    "New {colour} {noun} made of {material}. Great {occasion}.",
    "{style} {colour} {noun} {occasion}",
    "{material} {noun}, colour: {colour}",
)


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def stated_group(label_index: int, rng: np.random.Generator) -> str:
    """The group the text will name: the true one, or with NOISE_PROBABILITY another one."""
    true_group = GROUP_OF_LABEL[label_index]
    if rng.random() >= NOISE_PROBABILITY:
        return true_group
    return _choice(rng, tuple(g for g in GROUPS if g != true_group))


def describe(label_index: int, rng: np.random.Generator) -> str:
    """A product-style description of an item of class ``label_index`` (see module docs)."""
    if not 0 <= label_index < len(LABELS):
        raise ValueError(f"label_index must be in 0..{len(LABELS) - 1}, got {label_index}")
    group = stated_group(label_index, rng)
    fields = {
        "noun": _choice(rng, GROUP_NOUNS[group]),
        "colour": _choice(rng, COLOURS),
        "material": _choice(rng, MATERIALS),
        "style": _choice(rng, STYLES),
        "occasion": _choice(rng, OCCASIONS),
    }
    text = _choice(rng, TEMPLATES).format(**fields)
    return text[0].upper() + text[1:]


def describe_all(labels: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One description per label, in order, drawing from ``rng``."""
    return [describe(int(label), rng) for label in labels]


def bayes_text_accuracy() -> float:
    """Best accuracy any classifier can reach from the texts alone, with balanced classes.

    For each stated group, the best guess is any class of that group; the joint probability of
    (that class, that stated group) is prior * (1 - noise). Summed over the groups it is the
    number of groups times prior * (1 - noise).
    """
    prior = 1.0 / len(LABELS)
    return len(GROUPS) * prior * (1.0 - NOISE_PROBABILITY)


def group_named_in(text: str) -> str:
    """The group a generated text states (its noun's group); for picking honest examples."""
    found = {
        group
        for group, nouns in GROUP_NOUNS.items()
        for noun in nouns
        if re.search(rf"\b{re.escape(noun)}\b", text, flags=re.IGNORECASE)
    }
    if len(found) != 1:
        raise ValueError(f"cannot tell the group of {text!r}: matches {sorted(found)}")
    return found.pop()
