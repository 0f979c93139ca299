"""The default head's promises are checked before anything is written."""

from __future__ import annotations

from typing import Any

import pytest

from models.recipes.fashion_mnist.default_head import MAX_ECE, MIN_FUSION_GAIN, check_targets


def _evaluation(fused: float, image_only: float, ece: float) -> dict[str, Any]:
    return {
        "ablation": [
            {"input": "fused", "accuracy": fused},
            {"input": "image_only", "accuracy": image_only},
            {"input": "text_only", "accuracy": 0.7},
        ],
        "calibration": {"after": {"ece": ece}},
    }


def test_targets_are_the_issues() -> None:
    assert MIN_FUSION_GAIN == 0.03
    assert MAX_ECE == 0.03


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
