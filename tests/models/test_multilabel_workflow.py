"""The documented multilabel workflow, command by command (models/README.md, "Multilabel
bundles"): a CSV whose ``label`` column holds ``|``-separated labels becomes a bundle with a
model card (``fusionserve train-head --task multilabel``), is evaluated (``fusionserve
evaluate``) and is served beside another bundle, chosen with ``model=``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support.app_setup import answered, classify_files, make_settings, wait_ready
from tests.support.multilabel_dataset import write_multilabel_dataset
from tests.support.repo_paths import ROOT
from tests.support.tiny_bundle import make_tiny_bundle

SPLITS = {"train": 90, "val": 45, "test": 30}
NAME = "my-tags"


def _fusionserve(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_csv_of_label_sets_becomes_a_served_multilabel_bundle(tmp_path: Path) -> None:
    base = make_tiny_bundle(tmp_path / "base")
    dataset = write_multilabel_dataset(tmp_path / "data", SPLITS, csv=True)
    assert "|" in dataset.read_text()
    bundle, evaluation = tmp_path / "bundles" / "tags", tmp_path / "eval"
    cache = str(tmp_path / "cache")
    _fusionserve(
        "train-head", "--task", "multilabel", "--dataset", str(dataset),
        "--base-bundle", str(base), "--out", str(bundle), "--name", NAME,
        "--cache-dir", cache, "--no-progress",
    )  # fmt: skip
    _fusionserve(
        "evaluate", "--bundle", str(bundle), "--dataset", str(dataset), "--split", "test",
        "--out", str(evaluation), "--cache-dir", cache, "--no-progress",
    )  # fmt: skip

    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "multilabel"
    thresholds = manifest["fusion_head"]["thresholds"]
    card = (bundle / "model_card.md").read_text()
    assert "threshold" in card.lower()
    report = json.loads((evaluation / "report.json").read_text())
    assert report["task"] == "multilabel"
    assert [row["label"] for row in report["metrics"]["per_label"]] == manifest["labels"]
    assert [row["threshold"] for row in report["metrics"]["per_label"]] == thresholds
    assert {row["input"] for row in report["ablation"]} == {"fused", "image_only", "text_only"}

    settings = make_settings(base, bundles=[base, bundle])
    image = (dataset.parent / "test-0.png").read_bytes()
    text = dataset.read_text().splitlines()[1 + SPLITS["train"] + SPLITS["val"]].split(",")[1]
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        files = classify_files(image, text)
        body = answered(client.post("/classify", files=files, data={"model": NAME}))
        default = answered(client.post("/classify", files=classify_files(image, text)))
    assert (body["task"], body["bundle"]["name"]) == ("multilabel", NAME)
    assert default["task"] == "multiclass"
    probabilities = {p["label"]: p["probability"] for p in body["predictions"]}
    decided = [
        label
        for label, threshold in zip(manifest["labels"], thresholds, strict=True)
        if np.float32(probabilities[label]) >= np.float32(threshold)
    ]
    assert sorted(body["labels"]) == sorted(decided)
