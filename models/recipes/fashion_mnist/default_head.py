"""Rebuild the default bundle's head with the project's own tools: train-head, then evaluate.

Usage:
``python -m models.recipes.fashion_mnist.default_head [--work models/.cache/default-head]
[--seed 0]``

Needs Fashion-MNIST (``apt-get install dataset-fashion-mnist``) and the exported encoders in
``models/default`` (exported here if missing). Steps, each the same command a user runs:

1. ``python -m models.recipes.fashion_mnist.dataset_writer``: Fashion-MNIST as a labelled JSONL
   dataset (PNGs and
   generated product texts; seeded train/val split of the training file, the full test file).
2. ``python -m models.training.train_head`` (``fusionserve train-head``) on it, with
   ``models/default``
   as the base bundle: every fusion strategy, the winner on validation, temperature scaling.
3. ``python -m models.evaluation.evaluate`` (``fusionserve evaluate``) of the new bundle on the
   held-out test split.
4. Check the targets (fused accuracy at least ``MIN_FUSION_GAIN`` above image-only, ECE after
   scaling at most ``MAX_ECE``); only then copy the head, the reports, the figures and the model
   card (the evaluation report) into ``models/default``, rewrite and validate the manifest, and
   pick the sample inputs in ``models/samples``.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from models.recipes.fashion_mnist import build_default_bundle as bundle
from models.recipes.fashion_mnist import model_card
from models.recipes.fashion_mnist import recipe_steps as steps
from models.recipes.fashion_mnist.raw_data import LABELS
from models.recipes.fashion_mnist.samples import write_samples

WORK_DIR = bundle.DEFAULT_DIR.parent / ".cache" / "default-head"
# The strategies the committed head was chosen among (late fusion came later): a rebuild with
# the same seed gives the same head.
STRATEGIES = ("concat", "mean", "max", "weighted", "gated")
MIN_FUSION_GAIN = 0.03  # fused test accuracy minus image-only (the same head, text left out)
MAX_ECE = 0.03  # test ECE of the served (temperature-scaled) probabilities


def check_targets(evaluation: dict[str, Any]) -> dict[str, float]:
    """The model card's promises, checked before anything is written."""
    rows = {row["input"]: row for row in evaluation["ablation"]}
    gain = rows["fused"]["accuracy"] - rows["image_only"]["accuracy"]
    ece = evaluation["calibration"]["after"]["ece"]
    if gain < MIN_FUSION_GAIN:
        raise SystemExit(
            f"fused accuracy is only {gain:+.4f} over image-only; need {MIN_FUSION_GAIN}"
        )
    if ece > MAX_ECE:
        raise SystemExit(f"ECE after temperature scaling is {ece:.4f}; need at most {MAX_ECE}")
    return {"fusion_gain": gain, "ece_after": ece}


def main(argv: list[str] | None = None) -> int:
    args = steps.recipe_arguments(__doc__.splitlines()[0], WORK_DIR, argv)
    started = time.perf_counter()
    target = bundle.DEFAULT_DIR
    bundle.export_encoders(target, skip_existing=True)
    if not (target / "manifest.json").is_file():
        bundle.finish(target)

    data, trained, evaluated = args.work / "data", args.work / "bundle", args.work / "evaluation"
    steps.write_dataset(
        "models.recipes.fashion_mnist.dataset_writer", data, args.seed, args.data_dir
    )
    dataset = data / "dataset.jsonl"
    steps.train_head(
        dataset,
        target,
        trained,
        LABELS,
        seed=args.seed,
        name=bundle.NAME,
        version=bundle.VERSION,
        description=bundle.DESCRIPTION,
        options=("--strategies", ",".join(STRATEGIES)),
    )
    steps.evaluate_test_split(trained, dataset, evaluated)
    evaluation = json.loads((evaluated / "report.json").read_text())
    training = json.loads((trained / "training_report.json").read_text())
    targets = check_targets(evaluation)

    shutil.copyfile(trained / bundle.FUSION_HEAD_FILE, target / bundle.FUSION_HEAD_FILE)
    training = model_card.portable_training(training)
    (target / bundle.REPORT_FILE).write_text(json.dumps(training, indent=2) + "\n")
    for name in bundle.EVALUATION_FIGURES:
        shutil.copyfile(evaluated / name, target / name)
    evaluation = model_card.portable(evaluation)
    (target / bundle.EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    card = model_card.render(training, evaluation, targets, MIN_FUSION_GAIN, MAX_ECE)
    (target / bundle.MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    bundle.finish(target)  # the head changed: rewrite and validate the manifest
    write_samples(bundle.DEFAULT_DIR.parent / "samples", target, dataset)
    steps.log(
        f"default head rebuilt in {time.perf_counter() - started:.0f} s: fused - image-only "
        f"{targets['fusion_gain']:+.4f}, ECE after scaling {targets['ece_after']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
