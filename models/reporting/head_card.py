"""The strategy table and the ``model_card.md`` of a bundle written by ``train-head``."""

from __future__ import annotations

from typing import Any


def strategy_table(report: dict[str, Any]) -> str:
    """A Markdown table of every strategy's validation scores, the winner marked."""
    rows = [
        "| Strategy | Val accuracy | Val macro-F1 | Val loss | Image only | Text only "
        "| Epochs (best) | Seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, scores in report["strategies"].items():
        title = f"**{name}** (winner)" if name == report["winner"] else name
        rows.append(
            f"| {title} | {scores['val_accuracy']:.4f} | {scores['val_macro_f1']:.4f} | "
            f"{scores['val_loss']:.4f} | {scores['val_image_only_accuracy']:.4f} | "
            f"{scores['val_text_only_accuracy']:.4f} | {scores['epochs_run']} "
            f"({scores['best_epoch']}) | {scores['seconds']:.1f} |"
        )
    return "\n".join(rows)


def _class_table(report: dict[str, Any]) -> str:
    counts = report["dataset"]["class_counts"]
    rows = ["| Label | Train | Val |", "| --- | ---: | ---: |"]
    rows += [
        f"| {label} | {counts['train'][label]} | {counts['val'][label]} |"
        for label in report["dataset"]["labels"]
    ]
    return "\n".join(rows)


def render(report: dict[str, Any]) -> str:
    manifest, data, options = report["manifest"], report["dataset"], report["options"]
    base, calibration = report["base_bundle"], report["temperature"]
    head = report["fusion_head"]
    return f"""# {manifest["name"]} {manifest["version"]}

{manifest["description"]}

Written by `fusionserve train-head` (seed {report["seed"]}). The numbers below are measured on
the validation split, which also chose the fusion strategy and fitted the temperature, so they
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
fuses them with the winning strategy and classifies with ReLU, dropout and a linear layer
(projection width {options["projection_dim"]}; {head["parameters"]} parameters,
`{head["file"]}` {head["bytes"]} bytes).

Trained with AdamW (learning rate {options["learning_rate"]}, weight decay
{options["weight_decay"]}, batch size {options["batch_size"]}) and cross-entropy, with early
stopping on the fused validation loss (patience {options["patience"]}, at most
{options["max_epochs"]} epochs; the best epoch is kept). Strategies trained on the same data
and seed; the winner has the best validation accuracy (ties: lower validation loss):

{strategy_table(report)}

"Image only" and "Text only" are validation accuracies of the same head with the other
modality marked missing.

## Missing modalities

The head has a learned null embedding per modality that stands in for a missing one
(`image_present` / `text_present` inputs, 1 present, 0 missing). During training each
example's image was dropped with probability {options["modality_dropout"]} and its text with
the same probability (never both), so the head learned to answer from one modality. The
service accepts image-only and text-only requests for this bundle and marks them with
`missing_modality` in the response.

## Calibration

Temperature scaling fitted on the validation logits: T = {calibration["value"]:.4f}, stored in
the manifest; the service returns `softmax(logits / T)`. Validation expected calibration error
(15 bins): {calibration["val_ece_before"]:.4f} before, {calibration["val_ece_after"]:.4f} after
(measured on the split T was fitted on).
"""
