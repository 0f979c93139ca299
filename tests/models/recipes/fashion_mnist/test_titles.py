"""models.recipes.fashion_mnist.titles: the generated titles follow the documented scheme,
exactly."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from models.recipes.fashion_mnist import titles as ft
from models.recipes.fashion_mnist.raw_data import LABELS

SHIRT, PULLOVER, SNEAKER, BAG = (LABELS.index(n) for n in ("Shirt", "Pullover", "Sneaker", "Bag"))


def draws(label: int, count: int, seed: int = 0) -> list[str]:
    return ft.describe_all(np.full(count, label), np.random.default_rng(seed))


def test_same_generator_state_gives_the_same_texts() -> None:
    labels = np.arange(200) % len(LABELS)
    first = ft.describe_all(labels, np.random.default_rng([3, 1]))
    assert first == ft.describe_all(labels, np.random.default_rng([3, 1]))
    assert first != ft.describe_all(labels, np.random.default_rng([4, 1]))


@pytest.mark.parametrize("label", [-1, len(LABELS)])
def test_rejects_unknown_labels(label: int) -> None:
    with pytest.raises(ValueError, match="label_index"):
        ft.describe(label, np.random.default_rng(0))


def test_no_text_names_a_class() -> None:
    vocabulary = [
        *ft.all_hints(),
        *(noun for nouns in ft.GROUP_NOUNS.values() for noun in nouns),
        *ft.COLOURS,
        *ft.MATERIALS,
        *ft.STYLES,
        *ft.OCCASIONS,
        *ft.TEMPLATES,
    ]
    labels = np.arange(5000) % len(LABELS)
    texts = ft.describe_all(labels, np.random.default_rng(1))
    for word in ft.BANNED_WORDS:
        pattern = re.compile(rf"\b{re.escape(word)}", flags=re.IGNORECASE)
        assert not [v for v in vocabulary if pattern.search(v)], word
        assert not [t for t in texts if pattern.search(t)], word


def test_parse_recovers_group_and_hints_next_to_lookalike_nouns() -> None:
    assert ft.parse("Navy canvas high-top zip-up shoes") == (
        "footwear",
        frozenset({"high-top", "zip-up"}),
    )
    assert ft.parse("Zip-top leather bag | black") == ("bag", frozenset({"zip-top"}))
    assert ft.parse("Long-sleeved top - navy, wool") == ("tops", frozenset({"long-sleeved"}))
    assert ft.parse("Grey piece of topwear, colour: grey") == ("tops", frozenset())
    assert ft.group_named_in("Casual pair of trousers in navy denim") == "legs"
    with pytest.raises(ValueError, match="group"):
        ft.group_named_in("Navy cotton item")
    with pytest.raises(ValueError, match="group"):
        ft.group_named_in("A top and a bag")


def test_every_generated_text_parses_with_at_most_the_slots_of_hints() -> None:
    labels = np.arange(5000) % len(LABELS)
    for text in ft.describe_all(labels, np.random.default_rng(2)):
        group, hints = ft.parse(text)
        assert group in ft.GROUPS
        assert len(hints) <= ft.HINT_SLOTS


def test_hint_probability_by_hand() -> None:
    p, w = ft.HINT_PROBABILITY, ft.WRONG_HINT_PROBABILITY
    # "collared" is only in Shirt's 4 hints; Pullover gets it only as a wrong hint, drawn from
    # one of the 3 other tops classes.
    assert ft.hint_probability(SHIRT, "collared") == pytest.approx(p * (1 - w) / 4)
    assert ft.hint_probability(PULLOVER, "collared") == pytest.approx(p * w / 3 / 4)
    assert ft.hint_probability(SNEAKER, "collared") == 0.0
    # One-class groups draw wrong hints from all 9 other classes.
    assert ft.hint_probability(BAG, "collared") == pytest.approx(p * w / 9 / 4)
    assert ft.hint_probability(SHIRT, None) == pytest.approx(1 - p)


def test_likelihoods_are_distributions() -> None:
    total = sum(ft.text_likelihoods().values())
    np.testing.assert_allclose(total, np.ones(len(LABELS)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("label", [SHIRT, SNEAKER, BAG])
def test_generated_outcomes_follow_the_exact_likelihoods(label: int) -> None:
    count = 20000
    seen = Counter(ft.parse(text) for text in draws(label, count, seed=label))
    exact = {outcome: float(lik[label]) for outcome, lik in ft.text_likelihoods().items()}
    assert set(seen) <= {outcome for outcome, prob in exact.items() if prob > 0}
    total_variation = 0.5 * sum(abs(seen[o] / count - prob) for o, prob in exact.items())
    assert total_variation < 0.05
    true_group = ft.GROUP_OF_LABEL[label]
    stated_true = sum(n for (group, _), n in seen.items() if group == true_group) / count
    assert stated_true == pytest.approx(1 - ft.NOISE_PROBABILITY, abs=0.012)


def test_bayes_text_accuracy_matches_monte_carlo() -> None:
    count = 30000
    labels = np.random.default_rng(7).integers(0, len(LABELS), count)
    texts = ft.describe_all(labels, np.random.default_rng(8))
    likelihoods = ft.text_likelihoods()
    predicted = np.asarray([likelihoods[ft.parse(t)].argmax() for t in texts])
    estimate = float((predicted == labels).mean())
    exact = ft.bayes_text_accuracy()
    assert estimate == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / count))
    # Fine classes matter: above the group-only ceiling of the old scheme (0.45), but the text
    # alone is far from enough.
    assert 0.5 < exact < 0.75
    assert ft.bayes_predict(texts[0]) == predicted[0]
