"""Synthetic, noisy marketplace titles for Fashion-MNIST items.

Fashion-MNIST has no text, so the default bundle's text modality is generated. To keep the
fusion demo honest, a title carries a *coarse* group that is sometimes wrong and, only
sometimes, *fine-grained attribute hints* that are often shared by several classes and are
themselves sometimes wrong, like real marketplace titles. The exact scheme
(``describe(label_index, rng)``), with every draw taken from the given
``numpy.random.Generator`` in this order:

1. **Group.** Each label belongs to one coarse group (``GROUP_OF_LABEL``):

   - ``tops``: T-shirt/top, Pullover, Coat, Shirt
   - ``dress``: Dress
   - ``legs``: Trouser
   - ``footwear``: Sandal, Sneaker, Ankle boot
   - ``bag``: Bag

   With probability ``NOISE_PROBABILITY`` (0.10) the stated group is replaced by one of the
   other four groups, chosen uniformly (so exactly that share of titles names a wrong group).
2. **Noun.** A noun for the stated group is drawn uniformly from ``GROUP_NOUNS`` (e.g.
   "upper-body garment" for tops).
3. **Hints.** Each of ``HINT_SLOTS`` (2) independent slots carries, with probability
   ``HINT_PROBABILITY`` (0.5), one attribute hint, else nothing; a hint drawn twice is shown
   once (so a quarter of the titles have no hint). A slot's *source class* is the true class,
   except with probability ``WRONG_HINT_PROBABILITY`` (0.15) where it is another class: drawn
   uniformly from the other classes of the same group (a seller mixing up similar items), or
   from all nine other classes for the one-class groups. The hint is drawn uniformly from
   ``HINTS[source]``. Hints are shared between classes (``long-sleeved`` fits Pullover, Coat
   and Shirt; ``crew-neck`` T-shirt/top and Pullover; ``lace-up`` Sneaker and Ankle boot;
   ``sleeveless`` T-shirt/top and Dress), so even a correct hint often leaves several
   classes possible.
4. **Distractors.** A colour, a material, a style and an occasion are drawn uniformly and
   independently of the label (``COLOURS``, ``MATERIALS``, ``STYLES``, ``OCCASIONS``).
5. **Template.** A template is drawn uniformly from ``TEMPLATES`` and filled in; the hints,
   if any, stand right before the noun ("long-sleeved collared top").

No word in the vocabulary names a class or an obvious synonym of one: "shirt", "tee",
"coat", "jacket", "pullover", "sweater", "jumper", "sneaker", "trainer", "boot", "sandal" and
the like never appear (``BANNED_WORDS``, checked by the tests); "dress" and "trousers" appear
only as the group nouns they are.

The text depends on the label only through the stated group and the set of hints, which
``parse(text)`` recovers. So the best possible text-only accuracy with balanced classes is a
finite sum over (group, hints) outcomes, computed exactly by ``bayes_text_accuracy()``
(about 0.72; the old group-only scheme's was 0.45). ``text_likelihoods()`` gives
P(group, hints | label) for every outcome.
"""

from __future__ import annotations

import re
from itertools import product

import numpy as np

from models.recipes.fashion_mnist.raw_data import LABELS

NOISE_PROBABILITY = 0.10
HINT_SLOTS = 2
HINT_PROBABILITY = 0.5
WRONG_HINT_PROBABILITY = 0.15

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
# Fine-grained attribute hints per class (index order of LABELS). Several are shared.
HINTS: tuple[tuple[str, ...], ...] = (
    ("short-sleeved", "crew-neck", "sleeveless", "relaxed-fit"),  # T-shirt/top
    ("wide-leg", "slim-fit", "high-waisted", "straight-leg"),  # Trouser
    ("long-sleeved", "knit", "ribbed", "crew-neck"),  # Pullover
    ("sleeveless", "A-line", "midi-length", "wrap-style"),  # Dress
    ("long-sleeved", "padded", "quilted", "zip-up", "hooded"),  # Coat
    ("open-toe", "strappy", "slip-on", "flat"),  # Sandal
    ("long-sleeved", "buttoned", "collared", "checked"),  # Shirt
    ("lace-up", "low-top", "high-top", "cushioned"),  # Sneaker
    ("tote", "crossbody", "top-handle", "zip-top"),  # Bag
    ("ankle-height", "lace-up", "block-heel", "zip-up"),  # Ankle boot
)
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
# ``{item}`` is the noun, preceded by the hint when there is one.
TEMPLATES = (
    "{colour} {material} {item}, {style} look, {occasion}",
    "{style} {item} in {colour} {material}",
    "{item} - {colour}, {material}, {occasion}",
    "New {colour} {item} made of {material}. Great {occasion}.",
    "{style} {colour} {item} {occasion}",
    "{material} {item}, colour: {colour}",
    "{item} | {colour} | {material} | {style}",
    "Selling my {colour} {material} {item}, worn twice, {occasion}",
)
# Class names and obvious synonyms that must never appear in a generated text.
BANNED_WORDS = (
    "shirt",
    "t-shirt",
    "tshirt",
    "tee",
    "coat",
    "jacket",
    "parka",
    "pullover",
    "sweater",
    "jumper",
    "sweatshirt",
    "hoodie",
    "cardigan",
    "blouse",
    "sneaker",
    "trainer",
    "boot",
    "bootie",
    "sandal",
    "flip-flop",
    "handbag",
)


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _check_label(label_index: int) -> None:
    if not 0 <= label_index < len(LABELS):
        raise ValueError(f"label_index must be in 0..{len(LABELS) - 1}, got {label_index}")


def stated_group(label_index: int, rng: np.random.Generator) -> str:
    """The group the text will name: the true one, or with NOISE_PROBABILITY another one."""
    true_group = GROUP_OF_LABEL[label_index]
    if rng.random() >= NOISE_PROBABILITY:
        return true_group
    return _choice(rng, tuple(g for g in GROUPS if g != true_group))


def wrong_hint_sources(label_index: int) -> tuple[int, ...]:
    """Classes a wrong hint is drawn from: the others of the same group, else all others."""
    group = GROUP_OF_LABEL[label_index]
    same = tuple(c for c, g in enumerate(GROUP_OF_LABEL) if g == group and c != label_index)
    return same or tuple(c for c in range(len(LABELS)) if c != label_index)


def stated_hint(label_index: int, rng: np.random.Generator) -> str | None:
    """The attribute hint the text will carry, or None (see the module docs, step 3)."""
    if rng.random() >= HINT_PROBABILITY:
        return None
    source = label_index
    if rng.random() < WRONG_HINT_PROBABILITY:
        others = wrong_hint_sources(label_index)
        source = others[int(rng.integers(len(others)))]
    return _choice(rng, HINTS[source])


def stated_hints(label_index: int, rng: np.random.Generator) -> tuple[str, ...]:
    """The distinct hints of ``HINT_SLOTS`` independent slots, in the order drawn."""
    drawn = (stated_hint(label_index, rng) for _ in range(HINT_SLOTS))
    return tuple(dict.fromkeys(h for h in drawn if h is not None))


def describe(label_index: int, rng: np.random.Generator) -> str:
    """A marketplace-style title for an item of class ``label_index`` (see module docs)."""
    _check_label(label_index)
    group = stated_group(label_index, rng)
    noun = _choice(rng, GROUP_NOUNS[group])
    hints = stated_hints(label_index, rng)
    fields = {
        "item": " ".join((*hints, noun)),
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


def all_hints() -> tuple[str, ...]:
    """Every distinct hint, in first-seen order."""
    return tuple(dict.fromkeys(h for hints in HINTS for h in hints))


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    # Longest first, so "pair of trousers" wins over "trousers"; hyphens count as word parts.
    ordered = sorted(phrases, key=len, reverse=True)
    alternatives = "|".join(re.escape(p) for p in ordered)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", flags=re.IGNORECASE)


_HINT_PATTERN = _phrase_pattern(list(all_hints()))
_NOUN_GROUP = {noun.lower(): g for g, nouns in GROUP_NOUNS.items() for noun in nouns}
_NOUN_PATTERN = _phrase_pattern(list(_NOUN_GROUP))
_HINT_CASE = {hint.lower(): hint for hint in all_hints()}


def parse(text: str) -> tuple[str, frozenset[str]]:
    """The (stated group, set of hints) of a generated text: all it says about the label."""
    hints = [_HINT_CASE[h.lower()] for h in _HINT_PATTERN.findall(text)]
    if len(hints) > HINT_SLOTS or len(set(hints)) != len(hints):
        raise ValueError(f"cannot tell the hints of {text!r}: matches {hints}")
    nouns = _NOUN_PATTERN.findall(_HINT_PATTERN.sub(" ", text))
    groups = {_NOUN_GROUP[n.lower()] for n in nouns}
    if len(groups) != 1:
        raise ValueError(f"cannot tell the group of {text!r}: matches {sorted(groups)}")
    return groups.pop(), frozenset(hints)


def group_named_in(text: str) -> str:
    """The group a generated text states (its noun's group); for picking honest examples."""
    return parse(text)[0]


def group_probability(label_index: int, group: str) -> float:
    """P(stated group | label), step 1."""
    if group == GROUP_OF_LABEL[label_index]:
        return 1.0 - NOISE_PROBABILITY
    return NOISE_PROBABILITY / (len(GROUPS) - 1)


def hint_probability(label_index: int, hint: str | None) -> float:
    """P(hint | label), step 3; ``None`` is the no-hint outcome."""
    if hint is None:
        return 1.0 - HINT_PROBABILITY
    others = wrong_hint_sources(label_index)
    sources = [(label_index, 1.0 - WRONG_HINT_PROBABILITY)]
    sources += [(c, WRONG_HINT_PROBABILITY / len(others)) for c in others]
    within = sum(weight * HINTS[c].count(hint) / len(HINTS[c]) for c, weight in sources)
    return HINT_PROBABILITY * within


def hint_set_likelihoods() -> dict[frozenset[str], np.ndarray]:
    """P(set of hints | label) for every reachable set: a vector over labels.

    Enumerates every outcome of the ``HINT_SLOTS`` independent slots (no hint or one hint
    each); outcomes that show the same set of hints (e.g. a hint drawn twice) are summed.
    """
    slot = {
        h: np.asarray([hint_probability(c, h) for c in range(len(LABELS))])
        for h in (None, *all_hints())
    }
    sets: dict[frozenset[str], np.ndarray] = {}
    for outcome in product(slot, repeat=HINT_SLOTS):
        key = frozenset(h for h in outcome if h is not None)
        joint = np.prod([slot[h] for h in outcome], axis=0)
        sets[key] = sets.get(key, np.zeros(len(LABELS))) + joint
    return sets


def text_likelihoods() -> dict[tuple[str, frozenset[str]], np.ndarray]:
    """P(group, hints | label) for every (stated group, set of hints): a vector over labels.

    Steps 1 and 3 use separate draws, so the two factors multiply; the distractors and the
    template do not depend on the label and cancel out of any posterior.
    """
    groups = {g: np.asarray([group_probability(c, g) for c in range(len(LABELS))]) for g in GROUPS}
    hint_sets = hint_set_likelihoods()
    return {
        (group, hints): group_likelihood * hint_likelihood
        for group, group_likelihood in groups.items()
        for hints, hint_likelihood in hint_sets.items()
    }


def bayes_predict(text: str) -> int:
    """The Bayes-optimal text-only prediction with balanced classes (ties: lowest index).

    Recomputes ``text_likelihoods()``; for many texts, compute that once and look up ``parse``.
    """
    return int(np.argmax(text_likelihoods()[parse(text)]))


def bayes_text_accuracy() -> float:
    """Best accuracy any classifier can reach from the texts alone, with balanced classes.

    Exact: the sum over (stated group, hints) outcomes of max over labels of
    prior * P(group, hints | label).
    """
    prior = 1.0 / len(LABELS)
    return float(sum(prior * likelihood.max() for likelihood in text_likelihoods().values()))
