"""PNG figures of a multilabel evaluation report: per-label F1 bars, precision-recall curves and
per-label reliability diagrams, drawn from the report dict alone (as ``plots`` does for
multiclass reports), so a saved ``report.json`` can be re-plotted.

Matplotlib's object-oriented API with the Agg canvas (no pyplot, no display, no global state).
Curves are drawn at most ``PER_AXES`` labels to an axes, so that each colour of the ``tab10``
cycle names one label and many labels make more panels rather than an unreadable tangle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.reporting.plots import DPI

PER_AXES = 8
F1_PER_PANEL = 30  # labels in one panel of the per-label F1 figure
COLUMNS = 2


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, format="png")


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[start : start + PER_AXES] for start in range(0, len(items), PER_AXES)] or [[]]


def _panels(count: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` square-ish panels in up to ``COLUMNS`` columns."""
    columns = min(COLUMNS, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(5.6 * columns, 5.0 * rows + 0.4), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    axes = [grid[i // columns][i % columns] for i in range(rows * columns)]
    for spare in axes[count:]:
        spare.set_visible(False)
    figure.suptitle(title)
    return figure, axes[:count]


def _colour(i: int) -> str:
    return f"C{i % 10}"


def per_label_f1_png(report: dict[str, Any], path: Path) -> None:
    """``per_label_f1_figure`` as a PNG at ``path``."""
    _save(per_label_f1_figure(report), path)


def per_label_f1_figure(report: dict[str, Any]) -> Figure:
    """Each label's F1 at its threshold (bars; the value in the label's name), its precision
    and recall (markers), and the micro and macro F1 (lines); at most ``F1_PER_PANEL`` labels
    to a panel, so that any number of labels stays readable, and the legend below the
    panels, where it hides no bar."""
    scores = report["metrics"]
    rows = scores["per_label"]
    groups = [rows[i : i + F1_PER_PANEL] for i in range(0, len(rows), F1_PER_PANEL)] or [[]]
    columns = min(COLUMNS, len(groups))
    panel_rows = math.ceil(len(groups) / columns)
    tallest = max(len(group) for group in groups) or 1
    figure = Figure(
        figsize=(7.5 * columns, (1.0 + 0.34 * tallest) * panel_rows + 1.4), layout="constrained"
    )
    grid = figure.subplots(panel_rows, columns, squeeze=False)
    panels = [grid[i // columns][i % columns] for i in range(panel_rows * columns)]
    for spare in panels[len(groups) :]:
        spare.set_visible(False)
    for axes, group in zip(panels, groups, strict=False):
        _f1_panel(axes, group, scores)
    data = report["dataset"]
    figure.suptitle(f"Per-label F1 ({data['split']}, {data['examples']} examples)")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small")
    return figure


def _f1_panel(axes: Axes, rows: list[dict[str, Any]], scores: dict[str, Any]) -> None:
    # The values in the labels, where no marker, line or bar can cover them.
    names = [
        f"{row['label']}: F1 {row['f1']:.2f} (n={row['support']}, t={row['threshold']:.2f})"
        for row in rows
    ]
    place = np.arange(len(rows))
    f1 = [row["f1"] for row in rows]
    axes.barh(place, f1, height=0.6, color="tab:blue", alpha=0.8, label="F1")
    axes.scatter([r["precision"] for r in rows], place, marker="|", s=160, color="tab:orange")
    axes.scatter([r["recall"] for r in rows], place, marker="x", s=40, color="tab:green")
    # Legend entries for the markers without re-plotting them.
    axes.plot([], [], "|", markersize=12, color="tab:orange", label="precision")
    axes.plot([], [], "x", color="tab:green", label="recall")
    axes.axvline(scores["micro_f1"], color="black", linestyle="--", label="micro F1")
    axes.axvline(scores["macro_f1"], color="grey", linestyle=":", label="macro F1")
    axes.set_yticks(place, names)
    axes.invert_yaxis()  # the first label on top, as in the report's table
    axes.set_xlim(0, 1.02)
    axes.set_xlabel("Score at the label's threshold")
    axes.grid(axis="x", alpha=0.3)


def precision_recall_png(report: dict[str, Any], path: Path) -> None:
    """Each label's precision-recall curve (a step curve, as average precision sums it) and,
    as a dot, where its threshold puts it; labels without positives are named, not drawn."""
    curves = report["precision_recall_curves"]["labels"]
    scores = {row["label"]: row for row in report["metrics"]["per_label"]}
    drawn = [curve for curve in curves if curve["positives"]]
    mean_ap = report["metrics"]["mean_average_precision"]
    title = "Precision-recall curves" + ("" if mean_ap is None else f" (mAP {mean_ap:.3f})")
    groups = _chunks(drawn)
    figure, panels = _panels(len(groups), title)
    for axes, group in zip(panels, groups, strict=True):
        for i, curve in enumerate(group):
            row = scores[curve["label"]]
            colour = _colour(i)
            # From recall 0 at the first precision: the step a threshold above every score adds.
            recall = [0.0, *curve["recall"]]
            precision = [curve["precision"][0], *curve["precision"]]
            label = f"{curve['label']} (AP {row['average_precision']:.3f})"
            axes.step(recall, precision, where="pre", color=colour, label=label)
            axes.plot(row["recall"], row["precision"], "o", color=colour, markersize=6)
        axes.set_xlim(-0.01, 1.01)
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlabel("Recall")
        axes.set_ylabel("Precision")
        axes.grid(alpha=0.3)
        if group:
            axes.legend(loc="lower left", fontsize="small", title="dot: at the threshold")
    skipped = report["metrics"]["average_precision_skipped"]
    if skipped:
        figure.supxlabel("No positives (no curve): " + ", ".join(skipped), fontsize="small")
    _save(figure, path)


def label_reliability_png(report: dict[str, Any], path: Path) -> None:
    """Per label, the share of positives against the mean probability in each non-empty bin of
    the served probabilities, and the diagonal of perfect calibration."""
    section = report["calibration"]
    entry = section["after"] if section["applies"] else section["served"]
    scale = f", T={entry['temperature']:g}" if entry["temperature"] is not None else ""
    title = (
        f"Per-label reliability (as served{scale}, {section['bins']} bins), "
        f"mean ECE {entry['mean_ece']:.3f}"
    )
    groups = _chunks(list(entry["per_label"]))
    figure, panels = _panels(len(groups), title)
    for axes, group in zip(panels, groups, strict=True):
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        for i, label in enumerate(group):
            filled = [b for b in label["bins"] if b["count"]]
            axes.plot(
                [b["mean_probability"] for b in filled],
                [b["positive_rate"] for b in filled],
                marker="o",
                markersize=4,
                color=_colour(i),
                label=f"{label['label']} (ECE {label['ece']:.3f})",
            )
        axes.set_xlim(0, 1)
        axes.set_ylim(-0.02, 1.02)  # points at a rate of 0 or 1 stay visible
        axes.set_xlabel("Mean predicted probability")
        axes.set_ylabel("Share of items with the label")
        axes.legend(loc="upper left", fontsize="small")
        axes.grid(alpha=0.3)
    _save(figure, path)
