"""models.recipes.fashion_mnist.attribute_tags: class tags follow their rules exactly, attribute
tags follow their documented probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from app.bundle.manifest import LABEL_SEPARATOR
from models.recipes.fashion_mnist import attribute_tags as at
from models.recipes.fashion_mnist.raw_data import LABELS

COAT, SANDAL, SNEAKER, BAG = (LABELS.index(n) for n in ("Coat", "Sandal", "Sneaker", "Bag"))


def uniform_labels(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, 99]).integers(0, len(LABELS), count)


def test_the_tag_vocabulary() -> None:
    assert 8 <= len(at.TAGS) <= 12
    assert len(set(at.TAGS)) == len(at.TAGS)
    assert (*at.CLASS_TAGS, *at.ATTRIBUTE_TAGS) == at.TAGS
    assert all(tag.strip() == tag and tag for tag in at.TAGS)
    assert not [tag for tag in at.TAGS if LABEL_SEPARATOR in tag]


def test_probability_tables_cover_every_class_and_are_distributions() -> None:
    assert tuple(at.SEASON_PROBABILITIES) == LABELS
    assert tuple(at.STYLE_PROBABILITIES) == LABELS
    for table in (at.SEASON_PROBABILITIES, at.STYLE_PROBABILITIES):
        for values in table.values():
            assert all(0.0 <= p <= 1.0 for p in values)
            assert sum(values) <= 1.0
    for rule in at.CLASS_TAG_RULES.values():
        assert set(rule) <= set(LABELS)


def test_class_tags_follow_their_rules_exactly() -> None:
    labels = uniform_labels(3000)
    attributes = at.draw_attributes(labels, np.random.default_rng(1))
    matrix = at.tag_matrix(labels, attributes)
    for column, tag in enumerate(at.CLASS_TAGS):
        expected = np.asarray([LABELS[c] in at.CLASS_TAG_RULES[tag] for c in labels])
        np.testing.assert_array_equal(matrix[:, column], expected, err_msg=tag)
    np.testing.assert_array_equal(matrix[:, len(at.CLASS_TAGS) :], attributes)
    assert at.class_tags(LABELS.index("Dress")) == ("upper_body", "lower_body")
    assert at.class_tags(COAT) == ("upper_body", "long_sleeved")
    assert at.class_tags(BAG) == ("accessory",)


def test_no_item_has_an_empty_tag_set() -> None:
    assert all(at.class_tags(c) for c in range(len(LABELS)))
    labels = uniform_labels(2000)
    sets = at.tag_sets(labels, at.draw_attributes(labels, np.random.default_rng(2)))
    assert all(sets)
    # Tag sets list their tags in TAGS order.
    assert all(list(s) == sorted(s, key=at.TAGS.index) for s in sets)


def test_draws_are_deterministic_and_take_exactly_three_uniforms_per_item() -> None:
    labels = uniform_labels(500)
    first = at.draw_attributes(labels, np.random.default_rng([5, 1]))
    np.testing.assert_array_equal(first, at.draw_attributes(labels, np.random.default_rng([5, 1])))
    assert (first != at.draw_attributes(labels, np.random.default_rng([6, 1]))).any()
    rng, reference = np.random.default_rng(3), np.random.default_rng(3)
    at.draw_attributes(labels, rng)
    reference.random((len(labels), 3))
    assert rng.random() == reference.random()
    assert first.dtype == bool
    assert first.shape == (500, len(at.ATTRIBUTE_TAGS))


def test_seasons_and_styles_are_exclusive() -> None:
    labels = uniform_labels(5000)
    attributes = at.draw_attributes(labels, np.random.default_rng(4))
    season = [at.ATTRIBUTE_TAGS.index(t) for t in at.SEASON_TAGS]
    style = [at.ATTRIBUTE_TAGS.index(t) for t in at.STYLE_TAGS]
    assert attributes[:, season].sum(axis=1).max() <= 1
    assert attributes[:, style].sum(axis=1).max() <= 1


def test_attribute_frequencies_are_near_their_priors() -> None:
    count = 20000
    labels = uniform_labels(count, seed=7)
    attributes = at.draw_attributes(labels, np.random.default_rng(8))
    for column, tag in enumerate(at.ATTRIBUTE_TAGS):
        prior = at.prior(tag)
        # Balanced classes in expectation: the tag's frequency is its mean per-class probability.
        tolerance = 4 * np.sqrt(prior * (1 - prior) / count) + 0.005
        assert attributes[:, column].mean() == pytest.approx(prior, abs=tolerance), tag


@pytest.mark.parametrize("label", [COAT, SANDAL, SNEAKER, BAG])
def test_attribute_frequencies_per_class(label: int) -> None:
    count = 5000
    attributes = at.draw_attributes(np.full(count, label), np.random.default_rng(label))
    for column, (tag, p) in enumerate(at.attribute_probabilities(label).items()):
        tolerance = 4 * np.sqrt(p * (1 - p) / count) + 1e-9
        assert attributes[:, column].mean() == pytest.approx(p, abs=tolerance), tag
    if label == SANDAL:  # probability 0: never
        assert not attributes[:, at.ATTRIBUTE_TAGS.index("cold_weather")].any()


def test_tag_rules_document_every_tag() -> None:
    rules = at.tag_rules()
    assert [r.tag for r in rules] == list(at.TAGS)
    for rule in rules:
        assert rule.source == ("class" if rule.tag in at.CLASS_TAGS else "title")
        assert list(rule.per_class) == list(LABELS)
        assert rule.prior == pytest.approx(np.mean(list(rule.per_class.values())))
        assert rule.as_dict()["tag"] == rule.tag
    by_tag = {r.tag: r for r in rules}
    assert by_tag["footwear"].rule == "class is one of: Sandal, Sneaker, Ankle boot"
    assert by_tag["footwear"].prior == pytest.approx(0.3)
    assert by_tag["sale"].prior == pytest.approx(at.SALE_PROBABILITY)
    assert "Coat 0.80" in by_tag["cold_weather"].rule
    assert by_tag["cold_weather"].per_class["Coat"] == 0.8


def test_rejects_unknown_classes_and_tags() -> None:
    with pytest.raises(ValueError, match="labels"):
        at.draw_attributes(np.asarray([0, len(LABELS)]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="labels"):
        at.class_tags(-1)
    with pytest.raises(ValueError, match="unknown tag"):
        at.tag_rule("weatherproof")
    with pytest.raises(ValueError, match="shape"):
        at.tag_matrix(np.asarray([1, 2]), np.zeros((3, len(at.ATTRIBUTE_TAGS)), dtype=bool))
