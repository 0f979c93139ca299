"""``fusionserve train-head --task multilabel`` end to end on a generated multilabel dataset
(tags cat/dog/bird, any set of them, bird rarer) and the tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.core.engine import Engine, build_engine
from app.core.pipeline import sigmoid
from models.data.dataset import load_dataset
from models.data.features import FeatureExtractor
from models.evaluation.multilabel_metrics import decide, decision_scores
from models.reporting import head_card
from models.training import train_head
from models.training.multilabel_fitting import fit_sigmoid_temperature, tune_thresholds
from tests.support.app_setup import make_settings
from tests.support.multilabel_dataset import write_multilabel_dataset
from tests.support.tiny_bundle import make_tiny_bundle
from tests.support.train_head_runs import Trained, run_train_head, train_bundle, train_head_args

SPLITS = {"train": 90, "val": 45, "test": 15}
TAGS = ["bird", "cat", "dog"]  # sorted


def _multilabel_args(dataset: Path, base: Path, out: Path, *extra: str) -> list[str]:
    return train_head_args(dataset, base, out, "--task", "multilabel", *extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("train-head-multilabel")
    base = make_tiny_bundle(root / "base")
    dataset = write_multilabel_dataset(root / "data", SPLITS)
    cache = str(root / "cache")
    return train_bundle(base, dataset, root / "out", "--task", "multilabel", "--cache-dir", cache)


@pytest.fixture(scope="module")
def engine(trained: Trained) -> Engine:
    # Loaded as the service loads it.
    return build_engine(make_settings(trained.out))


def _val(engine: Engine, trained: Trained) -> tuple[np.ndarray, np.ndarray]:
    """The served head's logits on the validation rows, and their multi-hot targets."""
    dataset = load_dataset(trained.dataset, task="multilabel")
    rows = dataset.split("val")
    features = FeatureExtractor(engine, None, progress=False).extract(rows)
    return engine.pipeline.head_scores(features.image, features.text), dataset.label_matrix(rows)


def test_manifest_is_multilabel_with_the_winners_thresholds(
    trained: Trained, engine: Engine
) -> None:
    manifest = json.loads((trained.out / "manifest.json").read_text())
    report, winner = trained.report, trained.report["winner"]
    assert manifest == report["manifest"]
    assert manifest["task"] == "multilabel"
    assert manifest["labels"] == TAGS
    head = manifest["fusion_head"]
    thresholds = head["thresholds"]
    per_label = report["thresholds"]["per_label"]
    assert thresholds == [per_label[tag]["threshold"] for tag in TAGS]
    assert thresholds == list(report["strategies"][winner]["val_thresholds"].values())
    assert all(0.01 <= t <= 0.99 for t in thresholds)
    assert head["temperature"] == report["temperature"]["value"]
    assert head["temperature"] == report["strategies"][winner]["val_temperature"]
    assert engine.bundle.manifest.multilabel
    assert engine.bundle.manifest.decision_thresholds() == thresholds
    assert report["task"] == "multilabel"
    assert report["dataset"]["sizes"] == {"train": 90, "val": 45, "test_unused": 15}


def test_pos_weight_and_counts_come_from_the_training_split(trained: Trained) -> None:
    dataset = load_dataset(trained.dataset, task="multilabel")
    targets = dataset.label_matrix(dataset.split("train"))
    positives = targets.sum(axis=0)
    expected = (len(targets) - positives) / positives
    weights = trained.report["loss"]["pos_weight"]
    assert list(weights) == TAGS
    assert list(weights.values()) == pytest.approx(expected.tolist(), rel=1e-6)
    assert weights["bird"] > weights["cat"]  # the rarer label weighs more
    assert trained.report["loss"]["pos_weight_range"] == [0.01, 100.0]
    counts = trained.report["dataset"]["class_counts"]["train"]
    assert list(counts.values()) == positives.astype(int).tolist()
    empty = trained.report["dataset"]["empty_label_sets"]
    assert empty["train"] == int((targets.sum(axis=1) == 0).sum())


def test_winner_has_the_best_validation_micro_f1(trained: Trained) -> None:
    strategies = trained.report["strategies"]
    assert list(strategies) == ["concat", "mean", "max", "weighted", "gated", "late"]
    best = max(strategies.items(), key=lambda kv: (kv[1]["val_micro_f1"], -kv[1]["val_loss"]))
    assert trained.report["winner"] == best[0]
    for scores in strategies.values():
        for key in ("val_micro_f1", "val_macro_f1", "val_map"):
            assert 0.0 <= scores[key] <= 1.0
        assert scores["val_loss"] == pytest.approx(min(scores["val_loss_per_epoch"]))
        # Either modality alone is well above what predicting nothing scores (0).
        assert scores["val_image_only_micro_f1"] > 0.5
        assert scores["val_text_only_micro_f1"] > 0.3
    assert best[1]["val_micro_f1"] >= 0.8
    late = strategies["late"]["modality_weights_per_label"]
    assert list(late) == TAGS
    assert all(w["image"] + w["text"] == pytest.approx(1.0) for w in late.values())
    assert f"**{best[0]}** (winner)" in trained.stdout
    assert "thresholds (val micro-F1" in trained.stdout


def test_service_returns_sigmoids_of_the_scaled_logits(trained: Trained, engine: Engine) -> None:
    pipeline = engine.pipeline
    temperature = engine.bundle.manifest.fusion_head.temperature
    examples = load_dataset(trained.dataset, task="multilabel").split("val")[:8]
    for image, text in ((True, True), (True, False), (False, True)):
        items = [
            pipeline.prepare(e.image.read_bytes() if image else None, e.text if text else None)
            for e in examples
        ]
        served = pipeline.run(items)
        rows = len(items)
        image_features = (
            pipeline.encode_images(np.stack([i.pixels for i in items if i.pixels is not None]))
            if image
            else np.zeros((rows, 8), dtype=np.float32)
        )
        text_features = (
            pipeline.encode_texts([i.token_ids for i in items if i.token_ids is not None])
            if text
            else np.zeros((rows, 4), dtype=np.float32)
        )
        logits = pipeline.head_scores(
            image_features, text_features, np.full(rows, image), np.full(rows, text)
        )
        expected = torch.sigmoid(torch.from_numpy(logits).double() / temperature).numpy()
        np.testing.assert_allclose(served, expected, atol=1e-6)
    head = trained.report["fusion_head"]
    assert head["onnx_vs_torch_max_abs_diff"] <= 1e-5
    assert head["served_vs_torch_max_abs_diff"] <= 1e-5


def test_temperature_and_thresholds_refit_from_the_served_head(
    trained: Trained, engine: Engine
) -> None:
    manifest = engine.bundle.manifest
    logits, targets = _val(engine, trained)
    # The served head's logits are within 1e-5 of torch's: the same fit.
    temperature = fit_sigmoid_temperature(logits, targets)
    assert temperature == pytest.approx(manifest.fusion_head.temperature, rel=1e-4)
    probabilities = sigmoid(logits, manifest.fusion_head.temperature, dtype=np.float64)
    refit = tune_thresholds(probabilities, targets)
    np.testing.assert_allclose(refit, manifest.decision_thresholds(), atol=1e-5)
    refit_scores = decision_scores(targets, decide(probabilities, refit.tolist()))
    scores = trained.report["strategies"][trained.report["winner"]]
    assert refit_scores.micro_f1 == pytest.approx(scores["val_micro_f1"])
    assert refit_scores.macro_f1 == pytest.approx(scores["val_macro_f1"])
    calibration = trained.report["temperature"]
    assert calibration["val_bce_after"] <= calibration["val_bce_before"]


def test_model_card_covers_thresholds_and_late_weights(trained: Trained) -> None:
    card = (trained.out / "model_card.md").read_text()
    assert "| Strategy | Val micro-F1 | Val macro-F1 | Val mAP |" in card
    assert f"**{trained.report['winner']}** (winner)" in card
    for tag, scores in trained.report["thresholds"]["per_label"].items():
        assert f"| {tag} | " in card
        assert f"{scores['threshold']:.4f}" in card
    assert trained.report["thresholds"]["rule"] in card
    assert "## Late fusion weights" in card
    assert "`sigmoid(logits / T)`" in card
    assert "micro-F1 at its tuned\nthresholds" in card
    # Had late fusion won, the card would describe its head and its missing modalities.
    late_card = head_card.render(trained.report | {"winner": "late"})
    assert "mixes the two classifiers' logits with learned per-label" in late_card
    assert "The late-fusion head has no null embedding" in late_card
    assert "null embedding per modality" not in late_card


def test_same_seed_same_bytes_for_late_fusion(trained: Trained, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / name
        code, _ = run_train_head(
            *_multilabel_args(trained.dataset, trained.base, out, "--no-cache"),
            "--strategies", "late", "--seed", seed,
        )  # fmt: skip
        assert code == 0
        runs[name] = (out / "fusion_head.onnx").read_bytes()
        manifest = json.loads((out / "manifest.json").read_text())
        runs[name + "-manifest"] = manifest["fusion_head"]["thresholds"]
        if name == "a":  # trained alone, late is what it was alongside the other strategies
            alone = json.loads((out / "training_report.json").read_text())["strategies"]["late"]
            together = trained.report["strategies"]["late"]
            assert {**alone, "seconds": 0} == {**together, "seconds": 0}
    assert runs["a"] == runs["b"]
    assert runs["a-manifest"] == runs["b-manifest"]
    assert runs["a"] != runs["c"]
    if trained.report["winner"] == "late":  # trained alongside the others: the same head
        assert (trained.out / "fusion_head.onnx").read_bytes() == runs["a"]


def test_csv_label_sets_and_a_carved_validation_share(trained: Trained, tmp_path: Path) -> None:
    dataset = write_multilabel_dataset(
        tmp_path / "data", {"train": 100}, with_split=False, csv=True, seed=3
    )
    out = tmp_path / "out"
    args = ["--no-cache", "--strategies", "mean,late", "--max-epochs", "5"]
    code, stdout = run_train_head(*_multilabel_args(dataset, trained.base, out, *args))
    assert code == 0, stdout
    report = json.loads((out / "training_report.json").read_text())
    assert report["dataset"]["sizes"] == {"train": 90, "val": 10, "test_unused": 0}
    assert report["dataset"]["val_source"] == "random 0.1 of the training rows (seed 0)"
    assert all(n > 0 for n in report["dataset"]["class_counts"]["train"].values())


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert train_head.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert err.startswith("train-head: ")
    return err


def test_cli_refuses_bad_input(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    base = _multilabel_args(trained.dataset, trained.base, out, "--no-cache", "--max-epochs", "2")
    # A label no training row carries.
    err = _refused([*base, "--labels", "bird,cat,dog,fish"], capsys)
    assert "label 'fish' has 0 positive training example(s)" in err
    # A label the labels list leaves out, and a label with the separator in it.
    err = _refused([*base, "--labels", "bird,cat"], capsys)
    assert "'dog' is not in the labels" in err
    err = _refused([*base, "--labels", "bird|cat,dog"], capsys)
    assert "must not contain '|'" in err
    # A blank label in a set.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "x.png", "text": "t", "label": ["cat", " "]}) + "\n")
    (tmp_path / "x.png").write_bytes(b"not read before the label is checked")
    err = _refused(_multilabel_args(bad, trained.base, out), capsys)
    assert "line 1: field 'label' names a blank label" in err
    assert not out.exists()
    # An unknown task: argparse's usage error, also exit code 2.
    with pytest.raises(SystemExit) as exc:
        train_head.main([*base, "--task", "multitag"])  # the last --task counts
    assert exc.value.code == 2
    assert "argument --task: invalid choice: 'multitag'" in capsys.readouterr().err
