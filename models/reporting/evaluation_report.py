"""Markdown rendering of an evaluation report (the dict ``models.evaluation.evaluate.evaluate``
returns).

``render_markdown`` is reusable for model cards: it needs only the report dict. Images are
linked (relative paths) when the report has an ``images`` entry, as ``write_report`` adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default ``l``)."""
    marks = ["---:" if (align[i : i + 1] == "r") else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(report: dict[str, Any]) -> str:
    scores, calibration = report["metrics"], report["calibration"]
    served = calibration["after"] if calibration["applies"] else calibration["served"]
    rows = [
        ("Accuracy", _num(scores["accuracy"])),
        ("Macro precision", _num(scores["macro_precision"])),
        ("Macro recall", _num(scores["macro_recall"])),
        ("Macro F1", _num(scores["macro_f1"])),
        ("ECE (served probabilities)", _num(served["ece"])),
        ("NLL (served probabilities)", _num(served["nll"])),
    ]
    return table(("Metric", "Value"), rows, "lr")


def ablation_table(report: dict[str, Any]) -> str:
    rows = []
    for row in report["ablation"]:
        if row["supported"]:
            rows.append(
                (row["title"], _num(row["accuracy"]), _num(row["macro_f1"]), _num(row["ece"]))
            )
        else:
            rows.append((row["title"], row["note"], "—", "—"))
    return table(("Input", "Accuracy", "Macro F1", "ECE"), rows, "lrrr")


def calibration_table(report: dict[str, Any]) -> str:
    calibration = report["calibration"]
    if not calibration["applies"]:
        served = calibration["served"]
        return f"{calibration['note'].capitalize()}.\n\n" + table(
            ("Probabilities", "ECE", "NLL"),
            [("as served", _num(served["ece"]), _num(served["nll"]))],
            "lrr",
        )
    note = (
        "The bundle's temperature is 1: the served probabilities are the unscaled softmax.\n\n"
        if calibration["temperature"] == 1.0
        else ""
    )
    rows = [
        (title, f"{entry['temperature']:g}", _num(entry["ece"]), _num(entry["nll"]))
        for title, entry in (
            ("Before scaling (softmax of the raw logits)", calibration["before"]),
            ("After scaling (as served)", calibration["after"]),
        )
    ]
    return note + table(("Probabilities", "Temperature", "ECE", "NLL"), rows, "lrrr")


def per_class_table(report: dict[str, Any]) -> str:
    rows = [
        (c["label"], _num(c["precision"]), _num(c["recall"]), _num(c["f1"]), c["support"])
        for c in report["metrics"]["per_class"]
    ]
    return table(("Class", "Precision", "Recall", "F1", "Support"), rows, "lrrrr")


def confusion_table(report: dict[str, Any]) -> str:
    labels = report["bundle"]["labels"]
    matrix = report["metrics"]["confusion_matrix"]
    rows = [(f"**{label}**", *counts) for label, counts in zip(labels, matrix, strict=True)]
    return table(("true \\ predicted", *labels), rows, "l" + "r" * len(labels))


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    bundle, data = report["bundle"], report["dataset"]
    images = report.get("images", {})
    parts = [
        f"# Evaluation of {bundle['name']} {bundle['version']}",
        f"- Bundle: `{bundle['path']}` (head `{bundle['head_file']}`, sha256 "
        f"`{bundle['head_sha256']}`, output {bundle['output_type']})\n"
        f"- Dataset: `{data['path']}`, split **{data['split']}**: {data['examples']} of "
        f"{data['total_examples']} examples (splits in the file: "
        + ", ".join(f"{k} {v}" for k, v in data["split_counts"].items())
        + ")\n"
        "- Probabilities are those the service returns (the bundle's head, temperature "
        "and softmax); predictions are their argmax.",
        "## Summary",
        summary_table(report),
        "## Modality ablation",
        "Image only: the text is left out (zero features, text presence 0), as the service "
        "answers an image-only request; text only likewise.",
        ablation_table(report),
        "## Calibration",
        f"Expected calibration error over {report['calibration']['bins']} equal-width "
        "confidence bins; NLL is the mean negative log-likelihood of the true class.",
        calibration_table(report),
    ]
    if "reliability_diagram" in images:
        parts.append(f"![Reliability diagram]({images['reliability_diagram']})")
    parts += ["## Per-class scores", per_class_table(report)]
    parts += [
        "## Confusion matrix",
        "Rows: true class; columns: predicted class.",
        confusion_table(report),
    ]
    if "confusion_matrix" in images:
        parts.append(f"![Confusion matrix]({images['confusion_matrix']})")
    if "timings" in report:
        timings = ", ".join(
            f"{k.removesuffix('_s')} {v:.2f} s" for k, v in report["timings"].items()
        )
        parts += ["## Timings", timings]
    return "\n\n".join(parts) + "\n"
