"""The default head's promises are checked before anything is written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models.recipes.fashion_mnist.default_head import MAX_ECE, MIN_FUSION_GAIN, check_targets
from tests.support.repo_paths import ROOT


def _evaluation(fused: float, image_only: float, ece: float) -> dict[str, Any]:
    return {
        "ablation": [
            {"input": "fused", "accuracy": fused},
            {"input": "image_only", "accuracy": image_only},
            {"input": "text_only", "accuracy": 0.7},
        ],
        "calibration": {"after": {"ece": ece}},
    }


def test_targets_hold_at_their_bounds() -> None:
    """A gain of exactly MIN_FUSION_GAIN and an ECE of exactly MAX_ECE pass; a hair worse fails."""
    image_only = 0.5
    at_bounds = check_targets(_evaluation(image_only + MIN_FUSION_GAIN, image_only, MAX_ECE))
    assert at_bounds["fusion_gain"] == pytest.approx(MIN_FUSION_GAIN)
    with pytest.raises(SystemExit, match="over image-only"):
        check_targets(_evaluation(image_only + MIN_FUSION_GAIN - 1e-4, image_only, MAX_ECE))
    with pytest.raises(SystemExit, match="ECE after temperature scaling"):
        check_targets(_evaluation(image_only + MIN_FUSION_GAIN, image_only, MAX_ECE + 1e-4))


def test_the_shipped_head_meets_its_targets() -> None:
    """The committed evaluation of models/default (what its model card quotes) passes."""
    evaluation = json.loads((ROOT / "models" / "default" / "evaluation.json").read_text())
    targets = check_targets(evaluation)
    assert targets["fusion_gain"] >= MIN_FUSION_GAIN
    assert targets["ece_after"] <= MAX_ECE


def test_passing_report() -> None:
    targets = check_targets(_evaluation(0.93, 0.895, 0.012))
    assert targets["fusion_gain"] == pytest.approx(0.035)
    assert targets["ece_after"] == 0.012


@pytest.mark.parametrize(
    ("fused", "image_only", "ece", "message"),
    [
        (0.92, 0.895, 0.01, "only \\+0.0250 over image-only"),
        (0.95, 0.895, 0.031, "ECE after temperature scaling is 0.0310"),
    ],
)
def test_failing_report(fused: float, image_only: float, ece: float, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        check_targets(_evaluation(fused, image_only, ece))
