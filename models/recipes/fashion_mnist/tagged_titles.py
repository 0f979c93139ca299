"""Generated product titles that state attribute tags (the tagged Fashion-MNIST bundle's text).

The titles reuse the vocabulary and the noisy class evidence of ``titles`` (group nouns, the
seller's group mix-ups, the fine-grained hints, colours, materials) and add phrases that state
the item's attribute tags (``attribute_tags.ATTRIBUTE_TAGS``). ``titles``' style and occasion
distractors are not used: here words like "casual" or "for the office" carry a tag. The exact
scheme of ``describe_tagged(label_index, attributes, rng)``, every draw taken from ``rng`` in
this order:

1. **Noun.** With probability ``VAGUE_PROBABILITY`` (0.30) the title is *vague*: its noun is
   drawn uniformly from ``GENERIC_NOUNS`` ("item", "fashion find", ...) and names no group.
   Otherwise the group is ``titles.stated_group`` (the true group, or with probability
   ``titles.NOISE_PROBABILITY`` = 0.10 another one) and the noun is drawn uniformly from
   ``titles.GROUP_NOUNS`` of that group. So 63% of titles name the true group, 7% a wrong one.
2. **Hints.** ``titles.stated_hints``: 0 to 2 fine-grained hints ("long-sleeved", "open-toe",
   ...), sometimes from a similar class; they stand right before the noun.
3. **Attribute phrases.** For each attribute tag the item has, in ``ATTRIBUTE_TAGS`` order, the
   title states it with probability ``MENTION_PROBABILITY`` (0.80; one uniform draw), using a
   phrase drawn uniformly from ``PHRASES[tag]`` (synonyms and paraphrases: "winter",
   "insulated", "for chilly weather" all state ``cold_weather``). A tag the item does not have
   is never stated, so a stated attribute is always right and an unstated one is only
   less likely. Style and season phrases stand before the item ("casual summer ...") or after
   it ("... for the office"); sale phrases lead ("SALE: ...") or trail ("... - 30% off").
4. **Fillers.** A colour (``titles.COLOURS``), a material (``titles.MATERIALS``) and a template
   (``TEMPLATES``) are drawn uniformly, then with probability ``CONDITION_PROBABILITY`` (0.5) a
   condition (``CONDITIONS``, "like new", ...) is appended. None depends on the label or the tags.

What a title states (``parse_tagged`` recovers it exactly, ``TitleStatement.tags`` as tags):

- the body-region class tags through the noun's group (``GROUP_TAGS``: tops -> upper_body,
  dress -> upper_body and lower_body, legs -> lower_body, footwear -> footwear, bag ->
  accessory), right in 63% of titles, wrong in 7%, absent in the 30% vague ones;
- ``long_sleeved`` through the "long-sleeved" hint (``LONG_SLEEVED_HINT``); other hints
  ("short-sleeved", "knit", "collared", ...) are indirect evidence only;
- each attribute tag the item has, with probability 0.80, never one it does not have.

``title_evidence(tag)`` gives, exactly, P(title states the tag | item has it) and P(title states
it | item has not) with balanced classes: the text's own evidence, to set against the image's
(``attribute_tags.TagRule.image``). No title names a class (``titles.BANNED_WORDS``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.recipes.fashion_mnist import titles as ft
from models.recipes.fashion_mnist.attribute_tags import (
    ATTRIBUTE_TAGS,
    CLASS_TAG_RULES,
    SEASON_TAGS,
    STYLE_TAGS,
    TAGS,
    attribute_names,
)
from models.recipes.fashion_mnist.raw_data import LABELS

VAGUE_PROBABILITY = 0.30
MENTION_PROBABILITY = 0.80
CONDITION_PROBABILITY = 0.50

GENERIC_NOUNS: tuple[str, ...] = ("item", "fashion find", "wardrobe essential", "fashion piece")
# The class tags a noun of each titles group states.
GROUP_TAGS: dict[str, tuple[str, ...]] = {
    "tops": ("upper_body",),
    "dress": ("upper_body", "lower_body"),
    "legs": ("lower_body",),
    "footwear": ("footwear",),
    "bag": ("accessory",),
}
LONG_SLEEVED_HINT = "long-sleeved"

Placement = Literal["before", "after", "lead", "tail"]


@dataclass(frozen=True)
class Phrase:
    """Words that state an attribute tag, and where they stand in the title."""

    text: str
    placement: Placement  # before/after the item; sale phrases lead or trail the whole title


def _phrases(placement: Placement, *texts: str) -> tuple[Phrase, ...]:
    return tuple(Phrase(text, placement) for text in texts)


PHRASES: dict[str, tuple[Phrase, ...]] = {
    "warm_weather": (
        *_phrases("before", "summer", "lightweight summer", "breathable"),
        *_phrases("after", "for hot days", "for warm weather", "for the beach"),
    ),
    "cold_weather": (
        *_phrases("before", "winter", "thermal", "insulated"),
        *_phrases("after", "for cold days", "for chilly weather", "for the winter"),
    ),
    "formal": (
        *_phrases("before", "formal", "elegant", "smart"),
        *_phrases("after", "for the office", "for business meetings", "for special occasions"),
    ),
    "casual": (
        *_phrases("before", "casual", "laid-back", "easy-going"),
        *_phrases("after", "for weekends", "for lounging", "for days off"),
    ),
    "sporty": (
        *_phrases("before", "sporty", "athletic", "gym-ready"),
        *_phrases("after", "for the gym", "for running", "for workouts"),
    ),
    "sale": (
        *_phrases("lead", "SALE:", "Clearance:", "Reduced!"),
        *_phrases("tail", "30% off", "reduced price", "on sale"),
    ),
}
CONDITIONS: tuple[str, ...] = (
    "like new",
    "new with tags",
    "worn twice",
    "barely used",
    "great condition",
)
# {before}: adjective phrases and a space, or nothing; {after}: " " and the purpose phrases
# joined by " and ", or nothing; {item}: the hints, then the noun.
TEMPLATES: tuple[str, ...] = (
    "{before}{colour} {material} {item}{after}",
    "{before}{item} in {colour} {material}{after}",
    "{before}{colour} {item}{after} - {material}",
    "{before}{material} {item} in {colour}{after}",
)
# Style before season ("casual summer ...", "... for the office and for cold days"), whatever
# the draw order.
_BEFORE_ORDER = (*STYLE_TAGS, *SEASON_TAGS)


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _check_label(label_index: int) -> None:
    if not 0 <= label_index < len(LABELS):
        raise ValueError(f"label_index must be in 0..{len(LABELS) - 1}, got {label_index}")


def stated_noun(label_index: int, rng: np.random.Generator) -> tuple[str | None, str]:
    """(stated group or None for a vague title, noun): step 1."""
    if rng.random() < VAGUE_PROBABILITY:
        return None, _choice(rng, GENERIC_NOUNS)
    group = ft.stated_group(label_index, rng)
    return group, _choice(rng, ft.GROUP_NOUNS[group])


def stated_phrases(attributes: Collection[str], rng: np.random.Generator) -> dict[str, Phrase]:
    """The phrase stating each attribute tag the title mentions: step 3."""
    unknown = sorted(set(attributes) - set(ATTRIBUTE_TAGS))
    if unknown:
        raise ValueError(f"unknown attribute tag {unknown[0]!r}")
    chosen: dict[str, Phrase] = {}
    for tag in ATTRIBUTE_TAGS:
        if tag in attributes and rng.random() < MENTION_PROBABILITY:
            phrases = PHRASES[tag]
            chosen[tag] = phrases[int(rng.integers(len(phrases)))]
    return chosen


def _assemble(
    item: str,
    phrases: dict[str, Phrase],
    fields: dict[str, str],
    template: str,
    condition: str | None,
) -> str:
    in_order = [phrases[tag] for tag in _BEFORE_ORDER if tag in phrases]
    befores = [p.text for p in in_order if p.placement == "before"]
    afters = [p.text for p in in_order if p.placement == "after"]
    text = template.format(
        before="".join(f"{b} " for b in befores),
        after=f" {' and '.join(afters)}" if afters else "",
        item=item,
        **fields,
    )
    text = text[0].upper() + text[1:]
    if condition is not None:
        text = f"{text}, {condition}"
    for phrase in phrases.values():
        if phrase.placement == "lead":
            text = f"{phrase.text} {text}"
        elif phrase.placement == "tail":
            text = f"{text} - {phrase.text}"
    return text


def describe_tagged(label_index: int, attributes: Collection[str], rng: np.random.Generator) -> str:
    """A title for an item of class ``label_index`` with the given attribute tags (module docs)."""
    _check_label(label_index)
    _, noun = stated_noun(label_index, rng)
    hints = ft.stated_hints(label_index, rng)
    phrases = stated_phrases(attributes, rng)
    fields = {"colour": _choice(rng, ft.COLOURS), "material": _choice(rng, ft.MATERIALS)}
    template = _choice(rng, TEMPLATES)
    condition = _choice(rng, CONDITIONS) if rng.random() < CONDITION_PROBABILITY else None
    return _assemble(" ".join((*hints, noun)), phrases, fields, template, condition)


def describe_all_tagged(
    labels: np.ndarray, attributes: np.ndarray, rng: np.random.Generator
) -> list[str]:
    """One title per item, in order: ``attributes`` is ``attribute_tags.draw_attributes``'s."""
    if len(attributes) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(attributes)} attribute rows")
    return [
        describe_tagged(int(label), attribute_names(row), rng)
        for label, row in zip(labels.tolist(), attributes, strict=True)
    ]


def _phrase_pattern(phrases: Collection[str]) -> re.Pattern[str]:
    # Longest first, so "lightweight summer" wins over "summer"; hyphens count as word parts.
    ordered = sorted(phrases, key=len, reverse=True)
    alternatives = "|".join(re.escape(p) for p in ordered)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", flags=re.IGNORECASE)


_PHRASE_TAG = {p.text.lower(): tag for tag, phrases in PHRASES.items() for p in phrases}
_PHRASE_PATTERN = _phrase_pattern(_PHRASE_TAG)
_HINT_CASE = {hint.lower(): hint for hint in ft.all_hints()}
_HINT_PATTERN = _phrase_pattern(_HINT_CASE)
_NOUN_GROUP: dict[str, str | None] = {
    **{noun.lower(): group for group, nouns in ft.GROUP_NOUNS.items() for noun in nouns},
    **{noun.lower(): None for noun in GENERIC_NOUNS},
}
_NOUN_PATTERN = _phrase_pattern(_NOUN_GROUP)


@dataclass(frozen=True)
class TitleStatement:
    """What a generated title says: its noun's group (None if vague), hints, attribute tags."""

    group: str | None
    hints: frozenset[str]
    attributes: frozenset[str]

    @property
    def tags(self) -> frozenset[str]:
        """The tags the title states explicitly (module docs), right or wrong."""
        stated = set(GROUP_TAGS[self.group]) if self.group is not None else set()
        if LONG_SLEEVED_HINT in self.hints:
            stated.add("long_sleeved")
        return frozenset(stated | self.attributes)


def stated_attributes(text: str) -> frozenset[str]:
    """The attribute tags whose phrases (``PHRASES``) occur in ``text``."""
    return frozenset(_PHRASE_TAG[m.lower()] for m in _PHRASE_PATTERN.findall(text))


def parse_tagged(text: str) -> TitleStatement:
    """What a title of ``describe_tagged`` states; ValueError if it is not such a title."""
    attributes = stated_attributes(text)
    rest = _PHRASE_PATTERN.sub(" ", text)
    hints = [_HINT_CASE[m.lower()] for m in _HINT_PATTERN.findall(rest)]
    if len(hints) > ft.HINT_SLOTS or len(set(hints)) != len(hints):
        raise ValueError(f"cannot tell the hints of {text!r}: matches {hints}")
    nouns = _NOUN_PATTERN.findall(_HINT_PATTERN.sub(" ", rest))
    if len(nouns) != 1:
        raise ValueError(f"cannot tell the noun of {text!r}: matches {nouns}")
    return TitleStatement(_NOUN_GROUP[nouns[0].lower()], frozenset(hints), attributes)


def stated_tags(text: str) -> frozenset[str]:
    """The tags a generated title states explicitly."""
    return parse_tagged(text).tags


def class_statement_probability(tag: str, label_index: int) -> float:
    """P(the title states class tag ``tag`` | class ``label_index``), exactly."""
    _check_label(label_index)
    if tag == "long_sleeved":
        per_slot = ft.hint_probability(label_index, LONG_SLEEVED_HINT)
        return 1.0 - (1.0 - per_slot) ** ft.HINT_SLOTS
    if tag not in CLASS_TAG_RULES:
        raise ValueError(f"{tag!r} is not a class tag")
    named = sum(ft.group_probability(label_index, g) for g in ft.GROUPS if tag in GROUP_TAGS[g])
    return (1.0 - VAGUE_PROBABILITY) * named


@dataclass(frozen=True)
class TitleEvidence:
    """How often the title states a tag, with balanced classes (exact)."""

    tag: str
    stated_if_positive: float  # P(title states the tag | the item has it)
    stated_if_negative: float  # P(title states the tag | the item has not)
    how: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "stated_if_positive": self.stated_if_positive,
            "stated_if_negative": self.stated_if_negative,
            "how": self.how,
        }


def _class_how(tag: str) -> str:
    if tag == "long_sleeved":
        return f"the '{LONG_SLEEVED_HINT}' hint (titles' hints, wrong in 15% of slots)"
    groups = ", ".join(g for g in ft.GROUPS if tag in GROUP_TAGS[g])
    return (
        f"the noun of group {groups} (titles.GROUP_NOUNS); {VAGUE_PROBABILITY:.0%} of titles "
        f"have a generic noun, {ft.NOISE_PROBABILITY:.0%} of the others a wrong group"
    )


def title_evidence(tag: str) -> TitleEvidence:
    """P(stated | positive) and P(stated | negative) of one tag, with balanced classes."""
    if tag in ATTRIBUTE_TAGS:
        words = ", ".join(f"'{p.text}'" for p in PHRASES[tag])
        how = (
            f"one of {words}, with probability {MENTION_PROBABILITY} when the item has the "
            "tag, never otherwise"
        )
        return TitleEvidence(tag, MENTION_PROBABILITY, 0.0, how)
    if tag not in CLASS_TAG_RULES:
        raise ValueError(f"unknown tag {tag!r}; expected one of {', '.join(TAGS)}")
    by_class = [class_statement_probability(tag, c) for c in range(len(LABELS))]
    positive = [p for name, p in zip(LABELS, by_class, strict=True) if name in CLASS_TAG_RULES[tag]]
    negative = [
        p for name, p in zip(LABELS, by_class, strict=True) if name not in CLASS_TAG_RULES[tag]
    ]
    return TitleEvidence(tag, float(np.mean(positive)), float(np.mean(negative)), _class_how(tag))
