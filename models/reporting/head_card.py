"""The strategy table and the ``model_card.md`` of a bundle written by ``train-head``.

Rendered from the training report alone; a report without ``task`` (written before
multilabel heads existed) is a multiclass one.
"""

from __future__ import annotations

from typing import Any


def _multilabel(report: dict[str, Any]) -> bool:
    return bool(report.get("task") == "multilabel")


def strategy_table(report: dict[str, Any]) -> str:
    """A Markdown table of every strategy's validation scores, the winner marked."""
    if _multilabel(report):
        rows = [
            "| Strategy | Val micro-F1 | Val macro-F1 | Val mAP | Val loss | Image only "
            "| Text only | Epochs (best) | Seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    else:
        rows = [
            "| Strategy | Val accuracy | Val macro-F1 | Val loss | Image only | Text only "
            "| Epochs (best) | Seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    for name, scores in report["strategies"].items():
        title = f"**{name}** (winner)" if name == report["winner"] else name
        if _multilabel(report):
            numbers = (
                f"{scores['val_micro_f1']:.4f} | {scores['val_macro_f1']:.4f} | "
                f"{scores['val_map']:.4f} | {scores['val_loss']:.4f} | "
                f"{scores['val_image_only_micro_f1']:.4f} | "
                f"{scores['val_text_only_micro_f1']:.4f}"
            )
        else:
            numbers = (
                f"{scores['val_accuracy']:.4f} | {scores['val_macro_f1']:.4f} | "
                f"{scores['val_loss']:.4f} | {scores['val_image_only_accuracy']:.4f} | "
                f"{scores['val_text_only_accuracy']:.4f}"
            )
        rows.append(
            f"| {title} | {numbers} | {scores['epochs_run']} ({scores['best_epoch']}) | "
            f"{scores['seconds']:.1f} |"
        )
    return "\n".join(rows)


def _class_table(report: dict[str, Any]) -> str:
    counts = report["dataset"]["class_counts"]
    labels = report["dataset"]["labels"]
    if not _multilabel(report):
        rows = ["| Label | Train | Val |", "| --- | ---: | ---: |"]
        rows += [
            f"| {label} | {counts['train'][label]} | {counts['val'][label]} |" for label in labels
        ]
        return "\n".join(rows)
    weights, per_label = report["loss"]["pos_weight"], report["thresholds"]["per_label"]
    rows = [
        "| Label | Train positives | Val positives | pos_weight | Threshold | Val precision "
        "| Val recall | Val F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in labels:
        scores = per_label[label]
        rows.append(
            f"| {label} | {counts['train'][label]} | {counts['val'][label]} | "
            f"{weights[label]:.3f} | {scores['threshold']:.4f} | "
            f"{scores['val_precision']:.4f} | {scores['val_recall']:.4f} | "
            f"{scores['val_f1']:.4f} |"
        )
    empty = report["dataset"]["empty_label_sets"]
    rows.append("")
    rows.append(
        f"Examples with no label: {empty['train']} in training, {empty['val']} in validation."
    )
    return "\n".join(rows)


def _late_weights(report: dict[str, Any]) -> str:
    """The ``late`` strategy's learned per-label modality weights, if it was trained."""
    late = report["strategies"].get("late")
    if late is None:
        return ""
    rows = [
        "## Late fusion weights",
        "",
        "The `late` strategy's learned weight of each modality's logits, per label, with both\n"
        "present (they sum to 1; with one modality missing, the other's weight is 1):",
        "",
        "| Label | Image | Text |",
        "| --- | ---: | ---: |",
    ]
    rows += [
        f"| {label} | {w['image']:.4f} | {w['text']:.4f} |"
        for label, w in late["modality_weights_per_label"].items()
    ]
    return "\n".join(rows) + "\n\n"


def _head_sentence(report: dict[str, Any]) -> str:
    if report["winner"] == "late":
        return (
            "classifies each modality on its own (linear to the projection width, ReLU, "
            "dropout, linear) and mixes the two classifiers' logits with learned per-label "
            "modality weights, renormalised over the modalities present"
        )
    return (
        "fuses them with the winning strategy and classifies with ReLU, dropout and a linear layer"
    )


def _training_sentence(report: dict[str, Any]) -> str:
    options = report["options"]
    if _multilabel(report):
        low, high = report["loss"]["pos_weight_range"]
        loss = (
            "binary cross-entropy with\nlogits, each label's positives weighted by "
            "n_negative / n_positive over the training\nsplit (clipped into "
            f"[{low:g}, {high:g}]), with early stopping"
        )
        winner_rule = "validation micro-F1 at its tuned\nthresholds"
    else:
        loss = "cross-entropy, with early\nstopping"
        winner_rule = "validation accuracy"
    return (
        f"Trained with AdamW (learning rate {options['learning_rate']}, weight decay\n"
        f"{options['weight_decay']}, batch size {options['batch_size']}) and {loss} on the "
        f"fused validation loss (patience {options['patience']}, at most\n"
        f"{options['max_epochs']} epochs; the best epoch is kept). Strategies trained on the "
        f"same data\nand seed; the winner has the best {winner_rule} (ties: lower validation "
        "loss):"
    )


def _after_table(report: dict[str, Any]) -> str:
    if _multilabel(report):
        return (
            '"Image only" and "Text only" are validation micro-F1 of the same head, temperature '
            "and\nthresholds with the other modality marked missing. mAP is the mean average "
            "precision over\nthe labels with a validation positive; the loss is the training "
            "objective (BCE with pos_weight)."
        )
    return (
        '"Image only" and "Text only" are validation accuracies of the same head with the other\n'
        "modality marked missing."
    )


def _missing(report: dict[str, Any]) -> str:
    options = report["options"]
    if report["winner"] == "late":
        how = (
            "The late-fusion head has no null embedding: a missing modality (`image_present` /\n"
            "`text_present` inputs, 1 present, 0 missing) gets weight 0, so the logits are the "
            "other\nmodality's classifier's alone."
        )
    else:
        how = (
            "The head has a learned null embedding per modality that stands in for a missing "
            "one\n(`image_present` / `text_present` inputs, 1 present, 0 missing)."
        )
    return (
        f"{how} During training each\nexample's image was dropped with probability "
        f"{options['modality_dropout']} and its text with\nthe same probability (never both), "
        "so the head learned to answer from one modality. The\nservice accepts image-only and "
        "text-only requests for this bundle and marks them with\n`missing_modality` in the "
        "response."
    )


def _calibration(report: dict[str, Any]) -> str:
    calibration = report["temperature"]
    value = f"{calibration['value']:.4f}"
    if not _multilabel(report):
        before, after = calibration["val_ece_before"], calibration["val_ece_after"]
        return f"""Temperature scaling fitted on the validation logits: T = {value}, stored in
the manifest; the service returns `softmax(logits / T)`. Validation expected calibration error
(15 bins): {before:.4f} before, {after:.4f} after
(measured on the split T was fitted on).
"""
    before, after = calibration["val_bce_before"], calibration["val_bce_after"]
    return f"""One temperature for all labels, fitted on the validation logits by minimising the
mean binary cross-entropy: T = {value}, stored in the manifest; the service returns
`sigmoid(logits / T)` per label. Validation binary cross-entropy: {before:.4f} before,
{after:.4f} after (measured on the split T was fitted on).

## Decision thresholds

One threshold per label, stored in the manifest (`fusion_head.thresholds`) and listed under
Data with the label's validation precision, recall and F1 at it (optimistic: tuned on that
split). Rule: {report["thresholds"]["rule"]}.
"""


def render(report: dict[str, Any]) -> str:
    manifest, data, options = report["manifest"], report["dataset"], report["options"]
    base, head = report["base_bundle"], report["fusion_head"]
    tuned = "fitted the temperature"
    if _multilabel(report):
        tuned += "\nand tuned the thresholds"
    return f"""# {manifest["name"]} {manifest["version"]}

{manifest["description"]}

Written by `fusionserve train-head` (seed {report["seed"]}). The numbers below are measured on
the validation split, which also chose the fusion strategy and {tuned}, so they
are optimistic: run `fusionserve evaluate` on held-out data for a held-out report.

## Data

Dataset `{data["file"]}` (images under `{data["image_root"]}`): {data["sizes"]["train"]}
training and {data["sizes"]["val"]} validation examples (validation: {data["val_source"]});
{data["sizes"]["test_unused"]} rows with split `test` were not used.

{_class_table(report)}

## Model

Encoders (frozen, reused unchanged) from the base bundle `{base["name"]}` {base["version"]}:
image features of width {base["image_embedding_dim"]}, text embeddings of width
{base["text_embedding_dim"]}, with the base bundle's preprocessing. The fusion head scales each
modality (image features L2-normalised, both multiplied by the square root of their width),
{_head_sentence(report)}
(projection width {options["projection_dim"]}; {head["parameters"]} parameters,
`{head["file"]}` {head["bytes"]} bytes).

{_training_sentence(report)}

{strategy_table(report)}

{_after_table(report)}

{_late_weights(report)}## Missing modalities

{_missing(report)}

## Calibration

{_calibration(report)}"""
