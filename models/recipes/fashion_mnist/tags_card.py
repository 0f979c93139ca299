"""The tags bundle's ``model_card.md``: how its tags are made, how informative each modality
is, and the ``evaluate`` report on the test split.

Assembled from what the tools wrote: the tag table (``tagged_dataset_writer.tag_table_markdown``),
the dataset's tag statistics (``tag_statistics.json``), ``evaluate``'s held-out report and
``train-head``'s training report. Nothing but the fixed prose is typed by hand.
"""

from __future__ import annotations

from typing import Any

from models.recipes.fashion_mnist import model_card, tagged_titles
from models.recipes.fashion_mnist.tagged_dataset_writer import tag_table_markdown
from models.reporting import head_card
from models.reporting.evaluation_report import render_markdown

DATASET = "dataset.csv (written by python -m models.recipes.fashion_mnist.tagged_dataset_writer)"
BUNDLE_PATH = "models/fashion-tags"
HEADLINE = ("micro_f1", "macro_f1", "mean_average_precision", "subset_accuracy")


def portable(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation report without this machine's paths (it is committed)."""
    report = model_card.portable(evaluation)
    report["bundle"]["path"] = BUNDLE_PATH
    report["dataset"]["path"] = DATASET
    return report


def portable_training(training: dict[str, Any]) -> dict[str, Any]:
    """The training report without this machine's paths (it is committed)."""
    report = model_card.portable_training(training)
    report["dataset"]["file"] = DATASET
    return report


def ablation_rows(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["input"]: row for row in evaluation["ablation"]}


def targets_table(targets: dict[str, float]) -> str:
    rows = ["| Target | Measured |", "| --- | ---: |"]
    for metric in ("micro_f1", "mean_average_precision"):
        for other in ("image_only", "text_only"):
            rows.append(
                f"| fused {metric} minus {other} {metric} > 0 | "
                f"{targets[f'{metric}_over_{other}']:+.4f} |"
            )
    return "\n".join(rows)


def _statement_table(statistics: dict[str, Any]) -> str:
    """How often the test split's titles state each tag, among items with and without it."""
    test = statistics["statistics"]["splits"]["test"]
    examples = test["examples"]
    rows = [
        "| Tag | Test positives | Title states it (has it) | Title states it (has not) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for tag, positives in test["positives"].items():
        stated = test["stated_in_title"][tag]
        negatives = examples - positives
        if_positive = stated["positives"] / positives if positives else 0.0
        if_negative = stated["negatives"] / negatives if negatives else 0.0
        rows.append(f"| {tag} | {positives} | {if_positive:.3f} | {if_negative:.3f} |")
    return "\n".join(rows)


def _ablation_table(evaluation: dict[str, Any]) -> str:
    rows = [
        "| Inputs | micro-F1 | macro-F1 | mAP | subset accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in ablation_rows(evaluation).items():
        values = " | ".join(f"{row[metric]:.4f}" for metric in HEADLINE)
        rows.append(f"| {name} | {values} |")
    return "\n".join(rows)


def render(
    training: dict[str, Any],
    evaluation: dict[str, Any],
    statistics: dict[str, Any],
    targets: dict[str, float],
) -> str:
    manifest = training["manifest"]
    return _TEMPLATE.format(
        name=manifest["name"],
        version=manifest["version"],
        tags=len(manifest["labels"]),
        targets=targets_table(targets),
        ablation=_ablation_table(evaluation),
        tag_table=tag_table_markdown(),
        statements=_statement_table(statistics),
        vague=f"{tagged_titles.VAGUE_PROBABILITY:.0%}",
        mention=f"{tagged_titles.MENTION_PROBABILITY:.0%}",
        evaluation=model_card.demote(model_card.without_title(render_markdown(evaluation))),
        training=model_card.demote(model_card.without_title(head_card.render(training))),
    )


_TEMPLATE = """\
# Model card: {name} {version}

FusionServe's multilabel demo bundle: it tags a Fashion-MNIST image and its product title with
any of {tags} attribute tags (body region, sleeves, season, style, sale). It shares the default
bundle's frozen encoders (EfficientNet-Lite0 and all-MiniLM-L6-v2; see that bundle's card for
their licences) and adds a multilabel fusion head trained with `fusionserve train-head --task
multilabel`; each tag's probability is a sigmoid, and each tag has its own decision threshold,
tuned on the validation split. It exists to exercise multilabel serving end to end with real
models; it is not a production tagger.

On the held-out test split (10 000 images, each with its own generated title), through the
service's own pipeline, with the title or the image left out for the single-modality rows:

{ablation}

{targets}

## How the tags are made

Fashion-MNIST has classes, not tags, so the tags are generated
(`models/recipes/fashion_mnist/attribute_tags.py`; exact rules in its docstring). Five follow
from the class alone, so the image shows them; six are drawn per item with class-dependent odds,
so the image only makes them more or less likely, and the title states them:

{tag_table}

Titles (`models/recipes/fashion_mnist/tagged_titles.py`) leave the item's noun out {vague} of
the time, and state each attribute tag the item has {mention} of the time (never one it has
not). How often the test split's titles state each tag:

{statements}

So the image is needed for the class tags when the title is vague, and the title for the
attribute tags; neither alone can tag well, which the table above measures.

## Held-out evaluation (`fusionserve evaluate`, test split)

{evaluation}
## Training (`fusionserve train-head --task multilabel`)

{training}
## Limitations

- Tags and titles are synthetic: the learned weighting of title against image reflects this
  generator only.
- The image encoder was trained on ImageNet photos; Fashion-MNIST images are tiny greyscale
  thumbnails, upscaled.

## Reproduce

`python -m models.recipes.fashion_mnist.tags_head` (needs `apt-get install
dataset-fashion-mnist` and the default bundle) writes the dataset, runs `train-head` and
`evaluate` exactly as above and refuses to write anything unless fused beats each modality
alone on micro-F1 and mAP. The numbers come from `training_report.json` and `evaluation.json`
next to this card.
"""
