"""The per-label F1 figure stays readable at any label count: at most F1_PER_PANEL labels to a
panel, each label's F1 and threshold (two decimals) in its name, and the legend below the
panels rather than on one of them."""

from __future__ import annotations

from typing import Any

import pytest

from models.reporting.multilabel_plots import F1_PER_PANEL, per_label_f1_figure


def report(labels: int) -> dict[str, Any]:
    rows = [
        {
            "label": f"tag_{i}",
            "support": 10 + i,
            "threshold": 0.123456 + i / 1000,
            "f1": 0.5 + (i % 5) / 10,
            "precision": 0.9,
            "recall": 0.6,
        }
        for i in range(labels)
    ]
    return {
        "metrics": {"per_label": rows, "micro_f1": 0.8, "macro_f1": 0.7},
        "dataset": {"split": "test", "examples": 100},
    }


@pytest.mark.parametrize("labels", [1, 11, F1_PER_PANEL + 1, 77])
def test_panels_names_and_legend(labels: int) -> None:
    figure = per_label_f1_figure(report(labels))
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert len(panels) == -(-labels // F1_PER_PANEL)
    names = [tick.get_text() for axes in panels for tick in axes.get_yticklabels()]
    assert len(names) == labels
    assert names[0] == "tag_0: F1 0.50 (n=10, t=0.12)"
    assert all(len(axes.get_yticks()) <= F1_PER_PANEL for axes in panels)
    assert all(axes.get_legend() is None for axes in panels)  # none covers a bar
    assert len(figure.legends) == 1
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [
        "precision",
        "recall",
        "micro F1",
        "macro F1",
        "F1",
    ]
