"""``fusionserve train-head`` end to end on a small generated dataset and the tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import main as cli_main
from app.core.engine import Engine
from app.main import create_app
from models.data.dataset import load_dataset
from models.data.features import FeatureExtractor, load_engine
from models.evaluation.classification_metrics import fit_temperature, softmax
from models.training import train_head
from models.training.head_bundle import link_or_copy
from models.training.splits import TrainingDataError
from tests.support.app_setup import make_settings, wait_ready
from tests.support.synthetic_dataset import write_dataset
from tests.support.tiny_bundle import (
    LABELS,
    add_golden,
    make_tiny_base_bundle,
    make_tiny_bundle,
)
from tests.support.train_head_runs import Trained, run_train_head, train_bundle, train_head_args

SPLITS = {"train": 60, "val": 30, "test": 15}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("train-head")
    base = make_tiny_bundle(root / "base")
    dataset = write_dataset(root / "data", SPLITS)
    return train_bundle(
        base, dataset, root / "out", "--name", "pets", "--cache-dir", str(root / "cache")
    )


@pytest.fixture(scope="module")
def engine(trained: Trained) -> Engine:
    return load_engine(trained.out, threads=1)


def _val_scores(engine: Engine, trained: Trained) -> tuple[np.ndarray, np.ndarray]:
    """The written bundle's head logits on the validation rows, and their labels."""
    dataset = load_dataset(trained.dataset)
    rows = dataset.split("val")
    features = FeatureExtractor(engine, None, progress=False).extract(rows)
    logits = engine.pipeline.head_scores(features.image, features.text)
    return logits, dataset.label_indices(rows)


def test_bundle_manifest_and_files(trained: Trained) -> None:
    manifest = json.loads((trained.out / "manifest.json").read_text())
    base = json.loads((trained.base / "manifest.json").read_text())
    assert manifest == trained.report["manifest"]
    assert manifest["name"] == "pets"
    assert manifest["labels"] == sorted(LABELS)
    assert manifest["image_encoder"] == base["image_encoder"]
    assert manifest["text_encoder"] == base["text_encoder"]
    head = manifest["fusion_head"]
    assert head["image_present"] == "image_present"
    assert head["text_present"] == "text_present"
    for name in ("image.onnx", "text.onnx", "tokenizer.json"):
        assert (trained.out / name).read_bytes() == (trained.base / name).read_bytes()
    assert sorted(p.name for p in trained.out.iterdir()) == sorted(
        ["image.onnx", "text.onnx", "tokenizer.json", "fusion_head.onnx", "manifest.json",
         "model_card.md", "training_report.json"]
    )  # fmt: skip
    assert not list(trained.out.parent.glob(".out.*"))  # no staging directory left behind
    sizes = trained.report["dataset"]["sizes"]
    assert sizes == {"train": 60, "val": 30, "test_unused": 15}
    card = (trained.out / "model_card.md").read_text()
    assert "fusionserve evaluate" in card
    assert f"**{trained.report['winner']}** (winner)" in card


def test_winner_has_the_best_validation_accuracy(trained: Trained) -> None:
    strategies = trained.report["strategies"]
    assert list(strategies) == ["concat", "mean", "max", "weighted", "gated", "late"]
    best = max(strategies.items(), key=lambda kv: (kv[1]["val_accuracy"], -kv[1]["val_loss"]))
    assert trained.report["winner"] == best[0]
    for scores in strategies.values():
        assert 0 < scores["best_epoch"] <= scores["epochs_run"] <= 200
        assert scores["val_loss"] == pytest.approx(min(scores["val_loss_per_epoch"]))
    assert f"**{best[0]}** (winner)" in trained.stdout  # the table printed at the end
    assert "modality_weights" in strategies["weighted"]
    late = strategies["late"]["modality_weights_per_label"]
    assert list(late) == trained.report["dataset"]["labels"]
    for weights in late.values():
        assert weights["image"] + weights["text"] == pytest.approx(1.0)
    assert trained.report["task"] == "multiclass"
    assert "task" not in trained.report["manifest"]  # multiclass manifests are as before
    assert "## Late fusion weights" in (trained.out / "model_card.md").read_text()


def test_temperature_is_fitted_on_validation_logits(trained: Trained, engine: Engine) -> None:
    temperature = engine.bundle.manifest.fusion_head.temperature
    assert temperature == trained.report["temperature"]["value"]
    assert temperature != 1.0
    logits, labels = _val_scores(engine, trained)
    # Refitted from the served head's logits (ONNX, within 1e-5 of torch's): the same T.
    assert fit_temperature(logits, labels) == pytest.approx(temperature, rel=1e-4)
    calibration = trained.report["temperature"]
    assert calibration["val_ece_after"] <= calibration["val_ece_before"]


def test_service_returns_calibrated_probabilities(trained: Trained, engine: Engine) -> None:
    pipeline = engine.pipeline
    example = load_dataset(trained.dataset).split("val")[0]
    item = pipeline.prepare(example.image.read_bytes(), example.text)
    assert item.pixels is not None
    assert item.token_ids is not None
    image = pipeline.encode_images(item.pixels[None])
    text = pipeline.encode_texts([item.token_ids])
    logits = pipeline.head_scores(image, text)
    served = pipeline.run([item])
    temperature = engine.bundle.manifest.fusion_head.temperature
    np.testing.assert_allclose(served, softmax(logits, temperature), atol=1e-6)
    assert not np.allclose(served, softmax(logits), atol=1e-3)
    head = trained.report["fusion_head"]
    assert head["onnx_vs_torch_max_abs_diff"] <= 1e-5
    assert head["served_vs_torch_max_abs_diff"] <= 1e-5
    assert head["bytes"] == (trained.out / "fusion_head.onnx").stat().st_size


def test_service_answers_each_modality_alone(trained: Trained) -> None:
    examples = load_dataset(trained.dataset).split("val")
    with TestClient(create_app(make_settings(trained.out))) as client:
        wait_ready(client)
        correct = {"text": 0, "image": 0}
        for example in examples:
            png = example.image.read_bytes()
            forms = {
                "text": {"image": ("x.png", png, "image/png")},
                "image": {"text": (None, example.text)},
            }
            for missing, form in forms.items():
                response = client.post("/classify", files=form)
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["missing_modality"] == missing
                correct[missing] += body["label"] == example.label
    # Modality dropout: either modality alone is well above chance (1/3). The generator's
    # noise (20 % of images show another label's colour, 20 % of texts name another label)
    # caps each at about 0.8.
    assert correct["text"] / len(examples) >= 0.6  # image only
    assert correct["image"] / len(examples) >= 0.6  # text only


def test_same_seed_same_bytes_other_seed_other_bytes(trained: Trained, tmp_path: Path) -> None:
    winner = trained.report["winner"]
    head = (trained.out / "fusion_head.onnx").read_bytes()
    runs = {}
    for seed in ("0", "1"):
        out = tmp_path / f"seed{seed}"
        # Trained alone, with an empty cache: a strategy's head depends on neither.
        code, _ = run_train_head(
            *train_head_args(trained.dataset, trained.base, out, "--no-cache"),
            "--strategies", winner, "--seed", seed,
        )  # fmt: skip
        assert code == 0
        runs[seed] = (out / "fusion_head.onnx").read_bytes()
    assert runs["0"] == head
    assert runs["1"] != head


def test_a_base_bundle_trains_the_same_head_as_a_servable_one(
    trained: Trained, tmp_path: Path
) -> None:
    """What ``export-encoders`` writes (encoders, no head, no labels) is a base bundle like
    any other: the same encoders give the same head, byte for byte, and a servable bundle."""
    winner = trained.report["winner"]
    base = make_tiny_base_bundle(tmp_path / "encoders")
    heads = {}
    for name, source in (("full", trained.base), ("base", base)):
        out = tmp_path / name
        code, stdout = run_train_head(
            *train_head_args(trained.dataset, source, out, "--no-cache"), "--strategies", winner
        )
        assert code == 0, stdout
        heads[name] = (out / "fusion_head.onnx").read_bytes()
    assert heads["base"] == heads["full"]
    manifest = json.loads((tmp_path / "base" / "manifest.json").read_text())
    assert manifest["labels"] == sorted(LABELS)
    assert load_engine(tmp_path / "base", threads=1).bundle.manifest.labels == sorted(LABELS)


def test_a_base_bundle_with_golden_inputs_gives_them_to_the_trained_bundle(
    trained: Trained, tmp_path: Path
) -> None:
    """The golden inputs belong to the encoders: train-head carries them (file, hash,
    tolerance) into the servable bundle, which checks them when it loads."""
    base = make_tiny_base_bundle(tmp_path / "encoders")
    entry = add_golden(base, min_cosine=0.999)
    out = tmp_path / "trained"
    code, stdout = run_train_head(
        *train_head_args(trained.dataset, base, out, "--no-cache"),
        "--strategies", trained.report["winner"],
    )  # fmt: skip
    assert code == 0, stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 2
    assert manifest["golden"] == entry
    assert (out / "golden.json").read_bytes() == (base / "golden.json").read_bytes()
    served = load_engine(out, threads=1).bundle.manifest
    assert served.golden is not None
    assert served.golden.min_cosine == 0.999


def test_refuses_to_overwrite_without_force(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = train_head_args(trained.dataset, trained.base, out, "--no-cache", "--strategies", "max")
    assert train_head.main(args) == 2
    assert "not empty; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert train_head.main([*args, "--max-epochs", "3", "--force"]) == 0
    assert not (out / "keep.txt").exists()
    assert json.loads((out / "manifest.json").read_text())["name"] == "out"
    capsys.readouterr()
    assert train_head.main([*args, "--force", "--out", str(trained.base)]) == 2
    assert "is the base bundle" in capsys.readouterr().err


def test_carves_a_stratified_validation_share_without_val_rows(
    trained: Trained, tmp_path: Path
) -> None:
    dataset = write_dataset(tmp_path / "data", {"train": 90}, with_split=False)
    out = tmp_path / "out"
    args = ["--no-cache", "--strategies", "mean", "--max-epochs", "5"]
    code, stdout = run_train_head(*train_head_args(dataset, trained.base, out, *args))
    assert code == 0, stdout
    report = json.loads((out / "training_report.json").read_text())
    assert report["dataset"]["sizes"] == {"train": 81, "val": 9, "test_unused": 0}
    assert report["dataset"]["class_counts"]["val"] == {"bird": 3, "cat": 3, "dog": 3}
    assert report["dataset"]["val_source"].startswith("stratified 0.1")


def test_too_few_examples_of_a_label(trained: Trained, tmp_path: Path) -> None:
    root = tmp_path / "data"
    dataset = write_dataset(root, {"train": 12}, with_split=False)
    rows = dataset.read_text().splitlines()
    bird = '"label": "bird"'
    one_bird = [r for r in rows if bird not in r] + [next(r for r in rows if bird in r)]
    dataset.write_text("\n".join(one_bird) + "\n")
    with pytest.raises(TrainingDataError, match="'bird' has 1 training example"):
        train_head.run(
            train_head.parse_args(train_head_args(dataset, trained.base, tmp_path / "out"))
        )


def test_cli_reports_a_dataset_error_without_traceback(
    trained: Trained, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Through `fusionserve train-head`, which runs models.training.train_head in a child process.
    out = tmp_path / "out"
    args = train_head_args(trained.dataset, trained.base, out, "--labels", "cat,dog")
    assert cli_main(["train-head", *args]) == 2
    err = capfd.readouterr().err
    assert "line 3: field 'label': 'bird' is not in the labels" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_other_commands_still_reject_unknown_options() -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["predict", "--bogus"])
    assert exc.value.code == 2


def test_encoders_are_linked_as_files_even_through_relative_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "model.onnx").write_bytes(b"weights")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "model.onnx").symlink_to("../real/model.onnx")
    target = tmp_path / "new" / "model.onnx"
    link_or_copy(tmp_path / "base" / "model.onnx", target)
    assert not target.is_symlink()
    assert target.read_bytes() == b"weights"
    assert target.stat().st_ino == (tmp_path / "real" / "model.onnx").stat().st_ino
