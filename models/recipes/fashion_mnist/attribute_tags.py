"""Attribute tags for Fashion-MNIST items: the label sets of the multilabel (tagged) bundle.

Every item gets a set of tags out of ``TAGS`` (11 tags, none containing ``|``), of two kinds:

**Class tags** (``CLASS_TAGS``, source ``"class"``) follow from the item's class alone, by a
fixed rule (``CLASS_TAG_RULES``; the class names are those of ``raw_data.LABELS``):

- ``footwear``: Sandal, Sneaker, Ankle boot
- ``upper_body``: the garment covers the torso: T-shirt/top, Pullover, Dress, Coat, Shirt
- ``lower_body``: the garment covers the legs: Trouser, Dress
- ``accessory``: Bag
- ``long_sleeved``: Pullover, Coat, Shirt

The body-region tags cover every class (Dress has two of them), so **no item ever has an
empty tag set**. The image shows these tags (as well as it shows the class); the title states
them only when it names the item (see ``tagged_titles``).

**Attribute tags** (``ATTRIBUTE_TAGS``, source ``"title"``) are properties of the particular
item that a 28x28 greyscale image cannot show: drawn per item, by ``draw_attributes``, with
probabilities that depend on the class (``SEASON_PROBABILITIES``, ``STYLE_PROBABILITIES``,
``SALE_PROBABILITY``), and stated (or not) by the generated title. Per item, three independent
uniform draws ``u_season, u_style, u_sale`` in [0, 1), taken in that order as one row of
``rng.random((n, 3))``:

1. **Season**, at most one: ``warm_weather`` if ``u_season < p_warm``, else ``cold_weather``
   if ``u_season < p_warm + p_cold``, else neither (an all-season item).
2. **Style**, at most one: ``formal`` if ``u_style < p_formal``, ``casual`` if below
   ``p_formal + p_casual``, ``sporty`` if below ``p_formal + p_casual + p_sporty``, else none.
3. **Sale**: ``sale`` if ``u_sale < SALE_PROBABILITY`` (0.15, the same for every class: the
   image says nothing about it).

So the image informs the attribute tags only through the class (a Coat is ``cold_weather``
with probability 0.8, a Sandal never), and the title is what states them. ``tag_rules()`` is
the table a model card renders: every tag's source, rule, per-class probability and prior (its
frequency with balanced classes, as Fashion-MNIST's are: the mean of the per-class
probabilities). Everything is deterministic given the generator's state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.recipes.fashion_mnist.raw_data import LABELS

TagSource = Literal["class", "title"]

# Tag -> the classes that have it (class names of raw_data.LABELS).
CLASS_TAG_RULES: dict[str, tuple[str, ...]] = {
    "footwear": ("Sandal", "Sneaker", "Ankle boot"),
    "upper_body": ("T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"),
    "lower_body": ("Trouser", "Dress"),
    "accessory": ("Bag",),
    "long_sleeved": ("Pullover", "Coat", "Shirt"),
}
CLASS_TAGS: tuple[str, ...] = tuple(CLASS_TAG_RULES)
SEASON_TAGS: tuple[str, ...] = ("warm_weather", "cold_weather")
STYLE_TAGS: tuple[str, ...] = ("formal", "casual", "sporty")
SALE_TAG = "sale"
ATTRIBUTE_TAGS: tuple[str, ...] = (*SEASON_TAGS, *STYLE_TAGS, SALE_TAG)
TAGS: tuple[str, ...] = (*CLASS_TAGS, *ATTRIBUTE_TAGS)

# Class -> (P(warm_weather), P(cold_weather)); the rest of the mass is "all-season".
SEASON_PROBABILITIES: dict[str, tuple[float, float]] = {
    "T-shirt/top": (0.55, 0.05),
    "Trouser": (0.20, 0.20),
    "Pullover": (0.05, 0.60),
    "Dress": (0.50, 0.10),
    "Coat": (0.02, 0.80),
    "Sandal": (0.85, 0.00),
    "Shirt": (0.30, 0.15),
    "Sneaker": (0.25, 0.10),
    "Bag": (0.15, 0.10),
    "Ankle boot": (0.03, 0.65),
}
# Class -> (P(formal), P(casual), P(sporty)); the rest of the mass is "no stated style".
STYLE_PROBABILITIES: dict[str, tuple[float, float, float]] = {
    "T-shirt/top": (0.03, 0.50, 0.25),
    "Trouser": (0.30, 0.35, 0.15),
    "Pullover": (0.05, 0.55, 0.10),
    "Dress": (0.35, 0.40, 0.03),
    "Coat": (0.35, 0.30, 0.03),
    "Sandal": (0.05, 0.60, 0.10),
    "Shirt": (0.50, 0.30, 0.02),
    "Sneaker": (0.02, 0.35, 0.55),
    "Bag": (0.30, 0.35, 0.10),
    "Ankle boot": (0.25, 0.45, 0.03),
}
SALE_PROBABILITY = 0.15


def _by_label(table: Mapping[str, Sequence[float]]) -> np.ndarray:
    return np.asarray([table[name] for name in LABELS], dtype=np.float64)


_SEASON = _by_label(SEASON_PROBABILITIES)  # [classes, 2]
_STYLE = _by_label(STYLE_PROBABILITIES)  # [classes, 3]
# [classes, len(CLASS_TAGS)]: True where the class has the tag.
_CLASS_TAG_MATRIX = np.asarray(
    [[name in CLASS_TAG_RULES[tag] for tag in CLASS_TAGS] for name in LABELS], dtype=bool
)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    array = np.asarray(labels, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= len(LABELS)):
        raise ValueError(f"labels must be in 0..{len(LABELS) - 1}")
    return array


def class_tags(label_index: int) -> tuple[str, ...]:
    """The class tags of class ``label_index``, in ``CLASS_TAGS`` order."""
    row = _CLASS_TAG_MATRIX[int(_check_labels(np.asarray([label_index]))[0])]
    return tuple(tag for tag, has in zip(CLASS_TAGS, row, strict=True) if has)


def attribute_probabilities(label_index: int) -> dict[str, float]:
    """P(tag | class) of every attribute tag, for class ``label_index``."""
    index = int(_check_labels(np.asarray([label_index]))[0])
    values = (*_SEASON[index], *_STYLE[index], SALE_PROBABILITY)
    return {tag: float(p) for tag, p in zip(ATTRIBUTE_TAGS, values, strict=True)}


def _pick(draws: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """One-hot (or all-False) outcome per row: column k where ``draws`` falls in
    [p_0 + ... + p_(k-1), p_0 + ... + p_k)."""
    upper = np.cumsum(probabilities, axis=1)
    lower = np.concatenate([np.zeros((len(upper), 1)), upper[:, :-1]], axis=1)
    result: np.ndarray = (draws >= lower) & (draws < upper)
    return result


def draw_attributes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The attribute tags of items of the given classes: bool ``[n, len(ATTRIBUTE_TAGS)]``.

    Takes exactly ``rng.random((n, 3))`` from the generator (see the module docs)."""
    classes = _check_labels(labels)
    draws = rng.random((len(classes), 3))
    season = _pick(draws[:, 0:1], _SEASON[classes])
    style = _pick(draws[:, 1:2], _STYLE[classes])
    sale = draws[:, 2:3] < SALE_PROBABILITY
    return np.concatenate([season, style, sale], axis=1)


def tag_matrix(labels: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """Every tag of every item: bool ``[n, len(TAGS)]``, columns in ``TAGS`` order."""
    classes = _check_labels(labels)
    if attributes.shape != (len(classes), len(ATTRIBUTE_TAGS)):
        raise ValueError(
            f"attributes must have shape {(len(classes), len(ATTRIBUTE_TAGS))}, "
            f"got {attributes.shape}"
        )
    return np.concatenate([_CLASS_TAG_MATRIX[classes], attributes.astype(bool)], axis=1)


def tag_sets(labels: np.ndarray, attributes: np.ndarray) -> list[tuple[str, ...]]:
    """Every item's tags, in ``TAGS`` order."""
    return [
        tuple(tag for tag, has in zip(TAGS, row, strict=True) if has)
        for row in tag_matrix(labels, attributes).tolist()
    ]


def attribute_names(row: Sequence[bool] | np.ndarray) -> frozenset[str]:
    """The attribute tags set in one row of ``draw_attributes``."""
    return frozenset(tag for tag, has in zip(ATTRIBUTE_TAGS, row, strict=True) if bool(has))


def per_class_probabilities(tag: str) -> dict[str, float]:
    """P(tag | class) for every class (0 or 1 for a class tag)."""
    if tag in CLASS_TAG_RULES:
        return {name: float(name in CLASS_TAG_RULES[tag]) for name in LABELS}
    if tag not in ATTRIBUTE_TAGS:
        raise ValueError(f"unknown tag {tag!r}; expected one of {', '.join(TAGS)}")
    return {name: attribute_probabilities(i)[tag] for i, name in enumerate(LABELS)}


def prior(tag: str) -> float:
    """The tag's frequency with balanced classes: the mean of P(tag | class) over classes."""
    return float(np.mean(list(per_class_probabilities(tag).values())))


def _attribute_rule(tag: str) -> str:
    if tag == SALE_TAG:
        return f"drawn per item with probability {SALE_PROBABILITY}, whatever the class"
    kind = "season" if tag in SEASON_TAGS else "style"
    probabilities = per_class_probabilities(tag)
    listed = ", ".join(f"{name} {p:.2f}" for name, p in probabilities.items())
    exclusive = SEASON_TAGS if tag in SEASON_TAGS else STYLE_TAGS
    others = ", ".join(t for t in exclusive if t != tag)
    return f"drawn per item ({kind}, exclusive with {others}); P(tag | class): {listed}"


def _image_evidence(tag: str) -> str:
    if tag in CLASS_TAG_RULES:
        return "shown: follows from the class"
    if tag == SALE_TAG:
        return "none: independent of the class"
    values = per_class_probabilities(tag).values()
    return f"only the class prior: P(tag | class) from {min(values):.2f} to {max(values):.2f}"


@dataclass(frozen=True)
class TagRule:
    """How one tag is made: for the model card's tag table."""

    tag: str
    source: TagSource  # "class": a rule on the class; "title": a per-item draw the title states
    rule: str
    prior: float  # frequency with balanced classes
    per_class: dict[str, float]  # P(tag | class), by class name
    image: str  # what the image can tell about the tag

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "source": self.source,
            "rule": self.rule,
            "prior": self.prior,
            "per_class": dict(self.per_class),
            "image": self.image,
        }


def tag_rule(tag: str) -> TagRule:
    """The ``TagRule`` of one tag of ``TAGS``."""
    per_class = per_class_probabilities(tag)
    if tag in CLASS_TAG_RULES:
        source: TagSource = "class"
        rule = "class is one of: " + ", ".join(CLASS_TAG_RULES[tag])
    else:
        source, rule = "title", _attribute_rule(tag)
    return TagRule(tag, source, rule, prior(tag), per_class, _image_evidence(tag))


def tag_rules() -> list[TagRule]:
    """Every tag's rule, in ``TAGS`` order."""
    return [tag_rule(tag) for tag in TAGS]
