"""Rebuild the tags bundle's head with the project's own tools: train-head, then evaluate.

Usage:
``python -m models.recipes.fashion_mnist.tags_head [--work models/.cache/tags-head] [--seed 0]``

Needs Fashion-MNIST (``apt-get install dataset-fashion-mnist``) and the default bundle's
encoders (``fusionserve build-default-bundle``). Steps, each the same command a user runs:

1. ``python -m models.recipes.fashion_mnist.tagged_dataset_writer``: the images of the default
   recipe with attribute tags and generated titles, as a CSV whose ``label`` column holds
   ``|``-separated tags.
2. ``fusionserve train-head --task multilabel`` on it over the default bundle's encoders:
   every fusion strategy (``late`` included), the winner on validation micro-F1, temperature
   and per-label thresholds fitted on validation.
3. ``fusionserve evaluate`` of the new bundle on the held-out test split.
4. Check the targets (fused beats image-only and text-only on micro-F1 and on mAP); only then
   copy the head, reports, figures and model card into ``models/fashion-tags``, assemble the
   bundle (``tags_bundle``) and write its samples (``models/samples/tags.json``).
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from models.recipes.fashion_mnist import build_default_bundle as default_bundle
from models.recipes.fashion_mnist import recipe_steps as steps
from models.recipes.fashion_mnist import tags_bundle, tags_card
from models.recipes.fashion_mnist.attribute_tags import TAGS
from models.recipes.fashion_mnist.tag_samples import write_tag_samples

WORK_DIR = default_bundle.DEFAULT_DIR.parent / ".cache" / "tags-head"
SAMPLES_DIR = default_bundle.DEFAULT_DIR.parent / "samples"
TARGET_METRICS = ("micro_f1", "mean_average_precision")


def check_targets(evaluation: dict[str, Any]) -> dict[str, float]:
    """Fused minus each single modality, on micro-F1 and mAP; every margin must be positive."""
    rows = tags_card.ablation_rows(evaluation)
    margins = {
        f"{metric}_over_{other}": rows["fused"][metric] - rows[other][metric]
        for metric in TARGET_METRICS
        for other in ("image_only", "text_only")
    }
    failed = {name: margin for name, margin in margins.items() if margin <= 0}
    if failed:
        raise SystemExit(f"fused does not beat a single modality: {failed}")
    return margins


def main(argv: list[str] | None = None) -> int:
    args = steps.recipe_arguments(__doc__.splitlines()[0], WORK_DIR, argv)
    started = time.perf_counter()
    base, target = default_bundle.DEFAULT_DIR, tags_bundle.TAGS_DIR
    if not (base / "manifest.json").is_file():
        raise SystemExit(f"{base} is not built: run `fusionserve build-default-bundle`")

    data, trained, evaluated = args.work / "data", args.work / "bundle", args.work / "evaluation"
    writer = "models.recipes.fashion_mnist.tagged_dataset_writer"
    steps.write_dataset(writer, data, args.seed, args.data_dir)
    dataset = data / "dataset.csv"
    steps.train_head(
        dataset,
        base,
        trained,
        TAGS,
        seed=args.seed,
        name=tags_bundle.NAME,
        version=tags_bundle.VERSION,
        description=tags_bundle.DESCRIPTION,
        options=("--task", "multilabel"),
    )
    steps.evaluate_test_split(trained, dataset, evaluated)
    evaluation = json.loads((evaluated / "report.json").read_text())
    training = json.loads((trained / tags_bundle.REPORT_FILE).read_text())
    statistics = json.loads((data / tags_bundle.STATISTICS_FILE).read_text())
    targets = check_targets(evaluation)

    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(trained / tags_bundle.HEAD_FILE, target / tags_bundle.HEAD_FILE)
    training = tags_card.portable_training(training)
    (target / tags_bundle.REPORT_FILE).write_text(json.dumps(training, indent=2) + "\n")
    shutil.copyfile(data / tags_bundle.STATISTICS_FILE, target / tags_bundle.STATISTICS_FILE)
    for name in tags_bundle.EVALUATION_FIGURES:
        shutil.copyfile(evaluated / name, target / name)
    evaluation = tags_card.portable(evaluation)
    (target / tags_bundle.EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    card = tags_card.render(training, evaluation, statistics, targets)
    (target / tags_bundle.MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    tags_bundle.assemble(target, base)
    write_tag_samples(SAMPLES_DIR, target, dataset)
    margins = ", ".join(f"{name} {value:+.4f}" for name, value in targets.items())
    steps.log(f"tags head rebuilt in {time.perf_counter() - started:.0f} s: {margins}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
