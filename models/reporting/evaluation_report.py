"""Markdown rendering of an evaluation report (the dict ``models.evaluation.evaluate.evaluate``
returns).

``render_markdown`` is reusable for model cards: it needs only the report dict. Images are
linked (relative paths) when the report has an ``images`` entry, as ``write_report`` adds.
A multilabel report (``"task": "multilabel"``) has its own sections
(``render_multilabel_markdown``): the multiclass ones read fields it does not have.
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


def provenance(report: dict[str, Any]) -> str:
    """The bundle and dataset lines under the title."""
    bundle, data = report["bundle"], report["dataset"]
    return (
        f"- Bundle: `{bundle['path']}` (head `{bundle['head_file']}`, sha256 "
        f"`{bundle['head_sha256']}`, output {bundle['output_type']})\n"
        f"- Dataset: `{data['path']}`, split **{data['split']}**: {data['examples']} of "
        f"{data['total_examples']} examples (splits in the file: "
        + ", ".join(f"{k} {v}" for k, v in data["split_counts"].items())
        + ")"
    )


def timings_line(report: dict[str, Any]) -> str:
    return ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in report["timings"].items())


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown (a multilabel report's: ``render_multilabel_markdown``)."""
    if report.get("task") == "multilabel":
        return render_multilabel_markdown(report)
    bundle = report["bundle"]
    images = report.get("images", {})
    parts = [
        f"# Evaluation of {bundle['name']} {bundle['version']}",
        provenance(report) + "\n"
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
        parts += ["## Timings", timings_line(report)]
    return "\n\n".join(parts) + "\n"


# A multilabel report (``"task": "multilabel"``, ``models.evaluation.multilabel_evaluate``).


def multilabel_summary_table(report: dict[str, Any]) -> str:
    scores = report["metrics"]
    served = _served_calibration(report["calibration"])
    labels = len(scores["per_label"])
    averaged = labels - len(scores["average_precision_skipped"])
    rows = [
        ("Micro precision", _num(scores["micro_precision"])),
        ("Micro recall", _num(scores["micro_recall"])),
        ("Micro F1", _num(scores["micro_f1"])),
        ("Macro precision", _num(scores["macro_precision"])),
        ("Macro recall", _num(scores["macro_recall"])),
        ("Macro F1", _num(scores["macro_f1"])),
        ("Sample F1", _num(scores["samples_f1"])),
        (f"mAP (over {averaged} of {labels} labels)", _num(scores["mean_average_precision"])),
        ("Hamming loss", _num(scores["hamming_loss"])),
        ("Subset accuracy (exact label set)", _num(scores["subset_accuracy"])),
        ("Mean labels per item, true", _num(scores["mean_true_cardinality"], 3)),
        ("Mean labels per item, predicted", _num(scores["mean_predicted_cardinality"], 3)),
        ("Items with no true label", scores["empty_true_sets"]),
        ("Items with no predicted label", scores["empty_predicted_sets"]),
        ("Mean per-label ECE (served probabilities)", _num(served["mean_ece"])),
        ("Binary cross-entropy (served probabilities)", _num(served["binary_cross_entropy"])),
    ]
    return table(("Metric", "Value"), rows, "lr")


def multilabel_ablation_table(report: dict[str, Any]) -> str:
    rows: list[tuple[object, ...]] = []
    for row in report["ablation"]:
        if row["supported"]:
            values = ("micro_f1", "macro_f1", "mean_average_precision", "subset_accuracy")
            rows.append((row["title"], *(_num(row[k]) for k in values), _num(row["mean_ece"])))
        else:
            rows.append((row["title"], row["note"], "—", "—", "—", "—"))
    header = ("Input", "Micro F1", "Macro F1", "mAP", "Subset accuracy", "Mean ECE")
    return table(header, rows, "lrrrrr")


def per_label_table(report: dict[str, Any]) -> str:
    served = _served_calibration(report["calibration"])
    ece = {entry["label"]: entry["ece"] for entry in served["per_label"]}
    rows = [
        (
            row["label"],
            f"{row['threshold']:g}",
            _num(row["precision"]),
            _num(row["recall"]),
            _num(row["f1"]),
            row["support"],
            row["predicted"],
            _num(row["average_precision"]),
            _num(ece[row["label"]]),
        )
        for row in report["metrics"]["per_label"]
    ]
    header = (
        "Label",
        "Threshold",
        "Precision",
        "Recall",
        "F1",
        "Support",
        "Predicted",
        "AP",
        "ECE",
    )
    return table(header, rows, "lrrrrrrrr")


def multilabel_calibration_table(report: dict[str, Any]) -> str:
    calibration = report["calibration"]
    if not calibration["applies"]:
        served = calibration["served"]
        return f"{calibration['note'].capitalize()}.\n\n" + table(
            ("Probabilities", "Mean ECE", "BCE"),
            [("as served", _num(served["mean_ece"]), _num(served["binary_cross_entropy"]))],
            "lrr",
        )
    rows = [
        (
            title,
            f"{entry['temperature']:g}",
            _num(entry["mean_ece"]),
            _num(entry["binary_cross_entropy"]),
        )
        for title, entry in (
            ("Before scaling (sigmoid of the raw logits)", calibration["before"]),
            ("After scaling (as served)", calibration["after"]),
        )
    ]
    return table(("Probabilities", "Temperature", "Mean ECE", "BCE"), rows, "lrrr")


def _served_calibration(calibration: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = (
        calibration["after"] if calibration["applies"] else calibration["served"]
    )
    return entry


def render_multilabel_markdown(report: dict[str, Any]) -> str:
    """A multilabel report as Markdown."""
    bundle, scores = report["bundle"], report["metrics"]
    images = report.get("images", {})
    skipped = scores["average_precision_skipped"]
    parts = [
        f"# Evaluation of {bundle['name']} {bundle['version']} (multilabel)",
        provenance(report) + "\n"
        "- Probabilities are those the service returns (the bundle's head and temperature, a "
        "sigmoid per label); a label is predicted when its probability is at or above its "
        "threshold in the manifest, as the service decides.",
        "## Summary",
        multilabel_summary_table(report),
        "Micro scores pool every (item, label) decision; macro scores are plain means over all "
        f"{len(scores['per_label'])} labels, a label without positives or predictions scoring "
        "0; sample F1 is the mean over items of the F1 of their label sets, an item with no "
        "true and no predicted label scoring 1. mAP is the mean over labels of the "
        "(un-interpolated) average precision of their probabilities, whatever the thresholds"
        + (
            f"; it leaves out the labels without a positive item: {', '.join(skipped)}."
            if skipped
            else "."
        ),
        "## Modality ablation",
        "Image only: the text is left out (zero features, text presence 0), as the service "
        "answers an image-only request; text only likewise. Scores at the manifest's thresholds.",
        multilabel_ablation_table(report),
        "## Per-label scores",
        "Precision, recall and F1 at the label's threshold; support: items with the label; "
        "predicted: items given it; AP: average precision (— without positives); ECE: of the "
        "served probabilities.",
        per_label_table(report),
    ]
    if "per_label_f1" in images:
        parts.append(f"![Per-label F1]({images['per_label_f1']})")
    if "precision_recall" in images:
        parts += [
            "## Precision-recall curves",
            "One curve per label over every threshold; the dot marks the manifest's threshold.",
            f"![Precision-recall curves]({images['precision_recall']})",
        ]
    parts += [
        "## Calibration",
        f"Each label's expected calibration error over {report['calibration']['bins']} "
        "equal-width bins of its probability (bin i holds (i/bins, (i+1)/bins]): the "
        "bins' |share of items with the label − mean probability|, weighted by their share of "
        "the items; the mean is over labels. BCE is the mean binary cross-entropy over every "
        "item and label.",
        multilabel_calibration_table(report),
    ]
    if "reliability_diagram" in images:
        parts.append(f"![Per-label reliability diagram]({images['reliability_diagram']})")
    if "timings" in report:
        parts += ["## Timings", timings_line(report)]
    return "\n\n".join(parts) + "\n"
