"""The shipped tags bundle's committed parts: its card is what the recipe renders from the
committed reports (not edited by hand), and the targets the recipe checks hold in them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models.recipes.fashion_mnist import tags_bundle, tags_card, tags_head
from models.recipes.fashion_mnist.attribute_tags import TAGS

COMMITTED = tags_bundle.TAGS_DIR


def _read(name: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((COMMITTED / name).read_text(encoding="utf-8"))
    return report


def test_the_card_is_rendered_from_the_committed_reports() -> None:
    training, evaluation = _read(tags_bundle.REPORT_FILE), _read(tags_bundle.EVALUATION_FILE)
    statistics = _read(tags_bundle.STATISTICS_FILE)
    targets = tags_head.check_targets(evaluation)
    card = tags_card.render(training, evaluation, statistics, targets)
    assert (COMMITTED / tags_bundle.MODEL_CARD_FILE).read_text(encoding="utf-8") == card


def test_fused_beats_each_modality_on_micro_f1_and_map() -> None:
    evaluation = _read(tags_bundle.EVALUATION_FILE)
    rows = tags_card.ablation_rows(evaluation)
    for metric in ("micro_f1", "mean_average_precision"):
        assert rows["fused"][metric] > rows["image_only"][metric]
        assert rows["fused"][metric] > rows["text_only"][metric]


def test_the_trained_manifest_is_a_multilabel_head_over_the_tags() -> None:
    manifest = tags_bundle.trained_manifest(COMMITTED)
    assert (manifest["task"], manifest["labels"]) == ("multilabel", list(TAGS))
    thresholds = manifest["fusion_head"]["thresholds"]
    assert len(thresholds) == len(TAGS)
    assert all(0.0 < t < 1.0 for t in thresholds)


def test_the_recipe_refuses_a_head_that_a_single_modality_matches() -> None:
    evaluation = _read(tags_bundle.EVALUATION_FILE)
    for row in evaluation["ablation"]:
        if row["input"] == "text_only":
            row["micro_f1"] = next(
                r["micro_f1"] for r in evaluation["ablation"] if r["input"] == "fused"
            )
    with pytest.raises(SystemExit, match="micro_f1_over_text_only"):
        tags_head.check_targets(evaluation)
