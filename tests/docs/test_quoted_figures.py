"""Figures that hand-written prose quotes are the figures of the generated results they come from.

README.md quotes the default bundle's held-out accuracy from models/default/evaluation.json;
docs/int8.md's verdict quotes the accuracy of both bundles' evaluations and the throughput
ratios of its own generated benchmark section (written by the variants suite from
bench/results/variants.json). A re-run that changes a result makes these tests fail until the
prose says the new figure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.repo_paths import ROOT

TARGETS = {"1.6x"}  # the issue's own target, quoted as a target, not as a measurement


def ablation(bundle: str) -> dict[str, float]:
    report: dict[str, Any] = json.loads((ROOT / "models" / bundle / "evaluation.json").read_text())
    return {row["input"]: row["accuracy"] for row in report["ablation"]}


def test_readme_accuracy_is_the_evaluation() -> None:
    readme = (ROOT / "README.md").read_text()
    report = json.loads((ROOT / "models" / "default" / "evaluation.json").read_text())
    accuracy = ablation("default")
    quoted = re.search(
        r"fused accuracy (\d\.\d{4}), the same head with the title left out (\d\.\d{4}), "
        r"with the image left out (\d\.\d{4}); calibration error (\d\.\d{4})",
        " ".join(readme.split()),
    )
    assert quoted is not None, "README.md no longer quotes the default bundle's accuracy"
    expected = (
        accuracy["fused"],
        accuracy["image_only"],
        accuracy["text_only"],
        report["calibration"]["after"]["ece"],
    )
    assert tuple(float(x) for x in quoted.groups()) == tuple(round(x, 4) for x in expected)


def test_int8_verdict_accuracy_is_the_two_evaluations() -> None:
    page = (ROOT / "docs" / "int8.md").read_text()
    fp32, int8 = ablation("default"), ablation("default-int8")
    points = {name: round((int8[name] - fp32[name]) * 100, 2) for name in fp32}
    line = next(line for line in page.splitlines() if "points (" in line and "->" in line)
    expected = (
        f"{points['fused']:.2f} points ({fp32['fused']:.4f} -> {int8['fused']:.4f}); "
        f"image only {points['image_only']:.2f}, text only {points['text_only']:.2f}"
    )
    assert expected in line


def test_int8_verdict_ratios_come_from_the_generated_section() -> None:
    page = (ROOT / "docs" / "int8.md").read_text()
    generated = page[page.index("<!-- begin benchmark -->") : page.index("<!-- end benchmark -->")]
    verdict = page[page.index("## Verdict") :]
    quoted = set(re.findall(r"(?<![\d.-])\d+\.\d+x", verdict)) - TARGETS
    assert len(quoted) >= 5  # the pattern still finds them
    assert sorted(ratio for ratio in quoted if ratio not in generated) == []
