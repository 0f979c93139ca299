"""PNG figures of an evaluation report: the confusion matrix and the reliability diagram.

Matplotlib's object-oriented API with the Agg canvas (no pyplot, no display, no global state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, format="png")


def confusion_matrix_png(report: dict[str, Any], path: Path) -> None:
    """Counts in the cells; colours are row-normalised (recall per true class)."""
    labels = report["bundle"]["labels"]
    counts = np.asarray(report["metrics"]["confusion_matrix"], dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = min(4.0 + 0.55 * len(labels), 24.0)
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.8)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    data = report["dataset"]
    axes.set_title(f"Confusion matrix ({data['split']}, {data['examples']} examples)")
    font = max(5.0, 11.0 - 0.25 * len(labels))
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if shares[row, column] > 0.6 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=font)
    _save(figure, path)


def _curves(calibration: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    if not calibration["applies"]:
        return [("as served", calibration["served"], "tab:blue")]
    before, after = calibration["before"], calibration["after"]
    return [
        (f"before scaling (T=1), ECE {before['ece']:.3f}", before, "tab:orange"),
        (
            f"after scaling (T={after['temperature']:.3g}), ECE {after['ece']:.3f}",
            after,
            "tab:blue",
        ),
    ]


def reliability_diagram_png(report: dict[str, Any], path: Path) -> None:
    """Accuracy against mean confidence per bin (before and after temperature scaling), the
    diagonal of perfect calibration, and the number of examples per bin below."""
    curves = _curves(report["calibration"])
    figure = Figure(figsize=(6.4, 7.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    bins = curves[0][1]["bins"]
    lower = np.asarray([b["lower"] for b in bins])
    width = (lower[1] - lower[0]) if len(lower) > 1 else 1.0
    offsets = np.linspace(-0.2, 0.2, len(curves)) * width if len(curves) > 1 else [0.0]
    for (label, entry, colour), offset in zip(curves, offsets, strict=True):
        filled = [b for b in entry["bins"] if b["count"]]
        confidence = [b["confidence"] for b in filled]
        accuracy = [b["accuracy"] for b in filled]
        top.plot(confidence, accuracy, marker="o", color=colour, label=label)
        counts = [b["count"] for b in entry["bins"]]
        centres = lower + width / 2 + offset
        bottom.bar(centres, counts, width=width / len(curves), color=colour, alpha=0.8)
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)  # points at accuracy 0 or 1 stay visible
    top.set_ylabel("Accuracy")
    top.set_title(f"Reliability diagram ({len(bins)} bins)")
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    bottom.set_xlabel("Confidence (top-class probability)")
    bottom.set_ylabel("Examples")
    bottom.grid(alpha=0.3)
    _save(figure, path)
