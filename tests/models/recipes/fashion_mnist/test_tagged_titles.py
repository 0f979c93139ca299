"""models.recipes.fashion_mnist.tagged_titles: titles state the tags exactly as documented."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from models.recipes.fashion_mnist import attribute_tags as at
from models.recipes.fashion_mnist import tagged_titles as tt
from models.recipes.fashion_mnist import titles as ft
from models.recipes.fashion_mnist.raw_data import LABELS

COAT, SHIRT, DRESS, TSHIRT = (LABELS.index(n) for n in ("Coat", "Shirt", "Dress", "T-shirt/top"))


def generate(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    labels = np.random.default_rng([seed, 0]).integers(0, len(LABELS), count)
    attributes = at.draw_attributes(labels, np.random.default_rng([seed, 1]))
    return (
        labels,
        attributes,
        tt.describe_all_tagged(labels, attributes, np.random.default_rng(seed)),
    )


def test_same_generator_state_gives_the_same_titles() -> None:
    labels, attributes, first = generate(300, seed=1)
    assert first == tt.describe_all_tagged(labels, attributes, np.random.default_rng(1))
    assert first != tt.describe_all_tagged(labels, attributes, np.random.default_rng(2))


def test_no_title_names_a_class() -> None:
    _, _, texts = generate(5000, seed=2)
    phrases = [p.text for phrases in tt.PHRASES.values() for p in phrases]
    vocabulary = [*phrases, *tt.GENERIC_NOUNS, *tt.CONDITIONS, *tt.TEMPLATES]
    for word in ft.BANNED_WORDS:
        pattern = re.compile(rf"\b{re.escape(word)}", flags=re.IGNORECASE)
        assert not [v for v in vocabulary if pattern.search(v)], word
        assert not [t for t in texts if pattern.search(t)], word


def test_attribute_phrases_occur_nowhere_else_in_the_vocabulary() -> None:
    fillers = [
        *ft.COLOURS,
        *ft.MATERIALS,
        *ft.all_hints(),
        *(noun for nouns in ft.GROUP_NOUNS.values() for noun in nouns),
        *tt.GENERIC_NOUNS,
        *tt.CONDITIONS,
        *tt.TEMPLATES,
    ]
    for filler in fillers:
        assert tt.stated_attributes(filler) == frozenset(), filler
    for tag, phrases in tt.PHRASES.items():
        assert tag in at.ATTRIBUTE_TAGS
        for phrase in phrases:
            assert tt.stated_attributes(phrase.text) == {tag}, phrase
            assert tt.parse_tagged(f"Black {phrase.text} item").attributes == {tag}, phrase


def test_every_title_parses_and_states_only_attributes_the_item_has() -> None:
    labels, attributes, texts = generate(5000, seed=3)
    for label, row, text in zip(labels.tolist(), attributes, texts, strict=True):
        statement = tt.parse_tagged(text)
        assert statement.attributes <= at.attribute_names(row), text
        assert statement.group is None or statement.group in ft.GROUPS
        assert len(statement.hints) <= ft.HINT_SLOTS
        assert text[0].isupper()
        if statement.group == ft.GROUP_OF_LABEL[label]:
            # A title naming the true group states exactly the item's region tags.
            region = set(at.class_tags(label)) - {"long_sleeved"}
            assert set(statement.tags) - set(at.ATTRIBUTE_TAGS) - {"long_sleeved"} == region


def test_held_attributes_are_stated_at_the_mention_rate() -> None:
    labels, attributes, texts = generate(8000, seed=4)
    stated = [tt.parse_tagged(text).attributes for text in texts]
    for column, tag in enumerate(at.ATTRIBUTE_TAGS):
        held = [s for s, has in zip(stated, attributes[:, column], strict=True) if has]
        rate = sum(tag in s for s in held) / len(held)
        p = tt.MENTION_PROBABILITY
        assert rate == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / len(held))), tag


@pytest.mark.parametrize(("mention", "expect_all"), [(1.0, True), (0.0, False)])
def test_the_mention_rule(
    monkeypatch: pytest.MonkeyPatch, mention: float, expect_all: bool
) -> None:
    monkeypatch.setattr(tt, "MENTION_PROBABILITY", mention)
    labels, attributes, texts = generate(2000, seed=5)
    for row, text in zip(attributes, texts, strict=True):
        expected = at.attribute_names(row) if expect_all else frozenset()
        assert tt.parse_tagged(text).attributes == expected, text


def test_vague_titles_name_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tt, "VAGUE_PROBABILITY", 1.0)
    _, _, texts = generate(500, seed=6)
    assert all(tt.parse_tagged(t).group is None for t in texts)
    monkeypatch.setattr(tt, "VAGUE_PROBABILITY", 0.0)
    _, _, texts = generate(500, seed=6)
    assert all(tt.parse_tagged(t).group is not None for t in texts)


@pytest.mark.parametrize("label", [COAT, SHIRT, DRESS, TSHIRT])
def test_class_tag_statements_follow_the_exact_probabilities(label: int) -> None:
    count = 6000
    labels = np.full(count, label)
    attributes = at.draw_attributes(labels, np.random.default_rng(label))
    texts = tt.describe_all_tagged(labels, attributes, np.random.default_rng(label + 100))
    seen = Counter(tag for text in texts for tag in tt.stated_tags(text))
    for tag in at.CLASS_TAGS:
        p = tt.class_statement_probability(tag, label)
        assert seen[tag] / count == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / count) + 1e-9)
    groups = Counter(tt.parse_tagged(text).group for text in texts)
    assert groups[None] / count == pytest.approx(tt.VAGUE_PROBABILITY, abs=0.03)


def test_title_evidence() -> None:
    region = tt.title_evidence("footwear")
    true_group = (1 - tt.VAGUE_PROBABILITY) * (1 - ft.NOISE_PROBABILITY)
    assert region.stated_if_positive == pytest.approx(true_group)
    # A wrong group names footwear with probability NOISE / 4; the negatives never are footwear.
    wrong = (1 - tt.VAGUE_PROBABILITY) * ft.NOISE_PROBABILITY / (len(ft.GROUPS) - 1)
    assert region.stated_if_negative == pytest.approx(wrong)
    for tag in at.ATTRIBUTE_TAGS:
        evidence = tt.title_evidence(tag)
        assert (evidence.stated_if_positive, evidence.stated_if_negative) == (
            tt.MENTION_PROBABILITY,
            0.0,
        )
    sleeves = tt.title_evidence("long_sleeved")
    assert 0 < sleeves.stated_if_negative < sleeves.stated_if_positive < 0.5
    with pytest.raises(ValueError, match="unknown tag"):
        tt.title_evidence("waterproof")


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="label_index"):
        tt.describe_tagged(len(LABELS), (), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown attribute"):
        tt.describe_tagged(0, ("footwear",), np.random.default_rng(0))
    with pytest.raises(ValueError, match="noun"):
        tt.parse_tagged("Black cotton thing")
    with pytest.raises(ValueError, match="noun"):
        tt.parse_tagged("A top and a bag")
