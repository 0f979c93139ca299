"""``evaluate``: report numbers against the tiny heads' exact logits and hand-worked cases.

``TinyHead.logits`` computes in numpy what the tiny head's ONNX graph computes, so every score in
the report has an independently computed expected value (scipy softmax, scikit-learn metrics,
an ECE written out below). One bundle has a constant head whose numbers are worked out by hand.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from PIL import Image
from scipy.special import softmax
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from app.bundle.loader import sha256_file
from models.data.dataset import DatasetError
from models.data.features import FeatureExtractor, load_engine
from models.evaluation.evaluate import NOT_SUPPORTED, evaluate, main, write_report
from tests.support.images import encode_image
from tests.support.repo_paths import ROOT as REPO
from tests.support.tiny_bundle import LABELS, TinyHead, make_tiny_bundle_with_head

ADJECTIVES = ["small", "big", "red", "blue"]
NOUNS = ["photo", "cat", "dog", "bird"]
SPLIT_OF = {0: "train", 1: "val"}  # i % 5 -> split; the rest (3 of 5) are test rows


def _write_dataset(root: Path, rows: list[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    # Plain colours (mean pixels far apart) so the tiny encoders' features, and the tiny head's
    # predictions, differ from image to image.
    colours = np.random.default_rng(1).integers(0, 256, size=(len(rows), 3))
    for i, (row, colour) in enumerate(zip(rows, colours, strict=True)):
        image = Image.new("RGB", (36 + 3 * i, 40 + i % 7), tuple(colour.tolist()))
        (root / row["image"]).write_bytes(encode_image(image))
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _dataset(root: Path, count: int = 30) -> Path:
    rows = [
        {
            "image": f"{i}.png",
            "text": f"a {ADJECTIVES[i % 4]} {NOUNS[(i // 4) % 4]}",
            "label": LABELS[(i * 2 + i // 3) % 3],
            "split": SPLIT_OF.get(i % 5, "test"),
        }
        for i in range(count)
    ]
    return _write_dataset(root, rows)


def _ece_by_hand(probabilities: np.ndarray, y_true: np.ndarray, bins: int) -> float:
    """ECE with bins ``(k/bins, (k+1)/bins]``, written out independently of
    models.evaluation.classification_metrics."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += members.sum() / len(y_true) * gap
    return total


def _rewrite_head(
    root: Path, edit: Callable[[onnx.GraphProto], None], **manifest_fields: object
) -> None:
    """Edit a tiny bundle's head graph in place and update its manifest entry."""
    model = onnx.load(str(root / "head.onnx"))
    edit(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(root / "head.onnx"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["fusion_head"] |= {"sha256": sha256_file(root / "head.onnx"), **manifest_fields}
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def optional(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyHead]:
    """A head with presence inputs (null embeddings) and temperature 2."""
    root = tmp_path_factory.mktemp("optional")
    return root, make_tiny_bundle_with_head(root, presence=True, temperature=2.0)


@pytest.fixture(scope="module")
def report(optional: tuple[Path, TinyHead], data: Path) -> dict[str, Any]:
    return evaluate(optional[0], data, cache_dir=None, progress=False)


@pytest.fixture(scope="module")
def expected(optional: tuple[Path, TinyHead], data: Path) -> dict[str, Any]:
    """Test-split labels and the features the pipeline computes for them."""
    from models.data.dataset import load_dataset

    dataset = load_dataset(data, labels=LABELS)
    test = dataset.split("test")
    engine = load_engine(optional[0], threads=1)
    features = FeatureExtractor(engine, None, progress=False).extract(test)
    return {"y": dataset.label_indices(test), "image": features.image, "text": features.text}


def test_default_split_is_test_with_counts(report: dict[str, Any]) -> None:
    assert report["dataset"]["split"] == "test"
    assert report["dataset"]["examples"] == 18
    assert report["dataset"]["total_examples"] == 30
    assert report["dataset"]["split_counts"] == {
        "train": 6,
        "val": 6,
        "test": 18,
        "unassigned": 0,
    }
    assert report["bundle"]["name"] == "tiny-test-bundle"
    assert report["bundle"]["head_sha256"] == sha256_file(
        Path(report["bundle"]["path"]) / "head.onnx"
    )
    assert set(report["timings"]) >= {"load_bundle_s", "features_s", "head_s", "total_s"}


def test_scores_are_those_of_the_heads_exact_logits(
    report: dict[str, Any], expected: dict[str, Any], optional: tuple[Path, TinyHead]
) -> None:
    head, y = optional[1], expected["y"]
    predicted = head.logits(expected["image"], expected["text"]).argmax(axis=1)
    assert len(set(predicted.tolist())) > 1  # a non-trivial case: more than one class predicted
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=[0, 1, 2], zero_division=0
    )
    scores = report["metrics"]
    assert scores["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert scores["macro_precision"] == pytest.approx(precision.mean())
    assert scores["macro_recall"] == pytest.approx(recall.mean())
    assert scores["macro_f1"] == pytest.approx(f1.mean())
    assert scores["confusion_matrix"] == confusion_matrix(y, predicted, labels=[0, 1, 2]).tolist()
    assert [c["label"] for c in scores["per_class"]] == LABELS
    for row, p, r, f, s in zip(scores["per_class"], precision, recall, f1, support, strict=True):
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p, r, f))
        assert row["support"] == s


def test_calibration_before_and_after_the_bundles_temperature(
    report: dict[str, Any], expected: dict[str, Any], optional: tuple[Path, TinyHead]
) -> None:
    logits = optional[1].logits(expected["image"], expected["text"]).astype(np.float64)
    y = expected["y"]
    calibration = report["calibration"]
    assert calibration["applies"] is True
    assert calibration["temperature"] == 2.0
    for key, temperature in (("before", 1.0), ("after", 2.0)):
        probabilities = softmax(logits / temperature, axis=1)
        entry = calibration[key]
        assert entry["temperature"] == temperature
        assert entry["ece"] == pytest.approx(_ece_by_hand(probabilities, y, 15), abs=1e-6)
        nll = -np.log(probabilities[np.arange(len(y)), y]).mean()
        assert entry["nll"] == pytest.approx(nll, abs=1e-6)
        assert sum(b["count"] for b in entry["bins"]) == len(y)
        assert len(entry["bins"]) == 15
    assert calibration["before"]["ece"] != pytest.approx(calibration["after"]["ece"], abs=1e-3)


def test_ablation_rows_are_the_head_with_its_null_embeddings(
    report: dict[str, Any], expected: dict[str, Any], optional: tuple[Path, TinyHead]
) -> None:
    head, y = optional[1], expected["y"]
    image, text = expected["image"], expected["text"]
    present, absent = np.ones(len(y), dtype=bool), np.zeros(len(y), dtype=bool)
    cases = {
        "fused": head.logits(image, text),
        "image_only": head.logits(image, text, present, absent),
        "text_only": head.logits(image, text, absent, present),
    }
    assert not np.allclose(cases["image_only"], cases["fused"])
    assert not np.allclose(cases["text_only"], cases["fused"])
    rows = {row["input"]: row for row in report["ablation"]}
    assert list(rows) == ["fused", "image_only", "text_only"]
    for name, logits in cases.items():
        probabilities = softmax(logits.astype(np.float64) / 2.0, axis=1)
        predicted = probabilities.argmax(axis=1)
        _, _, f1, _ = precision_recall_fscore_support(
            y, predicted, labels=[0, 1, 2], zero_division=0
        )
        assert rows[name]["supported"] is True
        assert rows[name]["accuracy"] == pytest.approx(accuracy_score(y, predicted)), name
        assert rows[name]["macro_f1"] == pytest.approx(f1.mean()), name
        assert rows[name]["ece"] == pytest.approx(_ece_by_hand(probabilities, y, 15), abs=1e-6)
    assert rows["fused"]["ece"] == pytest.approx(report["calibration"]["after"]["ece"])


def test_a_head_without_presence_inputs_cannot_be_ablated(
    tiny_bundle_dir: Path, data: Path, tmp_path: Path
) -> None:
    result = evaluate(tiny_bundle_dir, data, split="all", cache_dir=None, progress=False)
    rows = {row["input"]: row for row in result["ablation"]}
    assert rows["fused"]["supported"] is True
    assert rows["fused"]["accuracy"] == pytest.approx(result["metrics"]["accuracy"])
    for name in ("image_only", "text_only"):
        assert rows[name] == {
            "input": name,
            "title": rows[name]["title"],
            "supported": False,
            "note": NOT_SUPPORTED,
        }
    assert result["dataset"]["examples"] == 30
    paths = write_report(result, tmp_path / "out")
    markdown = paths["markdown"].read_text()
    assert f"| Image only | {NOT_SUPPORTED} |" in markdown
    assert f"| Text only | {NOT_SUPPORTED} |" in markdown


def _constant_head(root: Path) -> None:
    """Logits ``[ln 4, 0, 0]`` for every input, temperature 2."""
    make_tiny_bundle_with_head(root, presence=True, temperature=2.0)

    def edit(graph: onnx.GraphProto) -> None:
        for init in graph.initializer:
            if init.name == "w":
                init.CopyFrom(numpy_helper.from_array(np.zeros((12, 3), np.float32), "w"))
            if init.name == "b":
                bias = np.array([math.log(4), 0, 0], np.float32)
                init.CopyFrom(numpy_helper.from_array(bias, "b"))

    _rewrite_head(root, edit)


def test_hand_worked_constant_head(tmp_path: Path) -> None:
    """Every example gets logits [ln 4, 0, 0]; 3 cats and 1 dog, no split column.

    T = 1: p = [4, 1, 1] / 6, so confidence 2/3 for "cat"; T = 2: logits [ln 2, 0, 0],
    p = [2, 1, 1] / 4, confidence 1/2. Accuracy 3/4; one populated bin, so
    ECE = |3/4 - 2/3| = 1/12 before and |3/4 - 1/2| = 1/4 after.
    NLL before = (3 ln(3/2) + ln 6) / 4; after = (3 ln 2 + ln 4) / 4 = 5 ln 2 / 4.
    cat: precision 3/4, recall 1, F1 6/7; dog and bird: 0. Macro P 1/4, R 1/3, F1 2/7.
    """
    _constant_head(tmp_path / "bundle")
    labels = ["cat", "cat", "dog", "cat"]
    rows = [{"image": f"{i}.png", "text": "a cat", "label": lab} for i, lab in enumerate(labels)]
    path = _write_dataset(tmp_path / "data", rows)
    result = evaluate(tmp_path / "bundle", path, cache_dir=None, progress=False)

    assert result["dataset"]["split"] == "all"
    scores = result["metrics"]
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["macro_precision"] == pytest.approx(0.25)
    assert scores["macro_recall"] == pytest.approx(1 / 3)
    assert scores["macro_f1"] == pytest.approx(2 / 7)
    assert [c["f1"] for c in scores["per_class"]] == pytest.approx([6 / 7, 0, 0])
    assert [c["support"] for c in scores["per_class"]] == [3, 1, 0]
    assert scores["confusion_matrix"] == [[3, 0, 0], [1, 0, 0], [0, 0, 0]]
    before, after = result["calibration"]["before"], result["calibration"]["after"]
    assert before["ece"] == pytest.approx(1 / 12, abs=1e-6)
    assert after["ece"] == pytest.approx(1 / 4, abs=1e-6)
    assert before["nll"] == pytest.approx((3 * math.log(1.5) + math.log(6)) / 4, abs=1e-6)
    assert after["nll"] == pytest.approx(5 * math.log(2) / 4, abs=1e-6)
    (filled,) = [b for b in after["bins"] if b["count"]]
    assert filled["count"] == 4
    assert filled["confidence"] == pytest.approx(0.5)
    assert filled["accuracy"] == pytest.approx(0.75)
    assert filled["lower"] < 0.5 <= filled["upper"]
    for row in result["ablation"]:  # the head ignores its inputs: every row is the same
        assert (row["accuracy"], row["ece"]) == pytest.approx((0.75, 0.25), abs=1e-6)


def test_probabilities_head_reports_that_scaling_does_not_apply(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    _constant_head(root)

    def edit(graph: onnx.GraphProto) -> None:
        graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        output = helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["batch", 3])
        del graph.output[:]
        graph.output.append(output)

    _rewrite_head(root, edit, output="probs", output_type="probabilities", temperature=1.0)
    rows = [{"image": f"{i}.png", "text": "a dog", "label": lab} for i, lab in enumerate(LABELS)]
    result = evaluate(root, _write_dataset(tmp_path / "data", rows), cache_dir=None, progress=False)
    calibration = result["calibration"]
    assert calibration["applies"] is False
    assert "does not apply" in calibration["note"]
    # p = [2/3, 1/6, 1/6] for all three; one of three is a cat: ECE |1/3 - 2/3| = 1/3.
    assert calibration["served"]["ece"] == pytest.approx(1 / 3, abs=1e-6)
    expected_nll = (math.log(1.5) + 2 * math.log(6)) / 3
    assert calibration["served"]["nll"] == pytest.approx(expected_nll, abs=1e-6)
    paths = write_report(result, tmp_path / "out")
    assert "does not apply" in paths["markdown"].read_text()
    with Image.open(paths["reliability_diagram"]) as image:
        assert image.size[0] > 300


def test_report_files(report: dict[str, Any], tmp_path: Path) -> None:
    paths = write_report(dict(report), tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "report.json",
        "report.md",
        "confusion_matrix.png",
        "reliability_diagram.png",
    }
    for name in ("confusion_matrix", "reliability_diagram"):
        with Image.open(paths[name]) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 400 <= width <= 3000
            assert 400 <= height <= 3000
            assert len(np.unique(np.asarray(image.convert("L")))) > 10  # drawn, not blank
    saved = json.loads(paths["json"].read_text())
    assert saved["metrics"] == report["metrics"]
    assert saved["images"] == {
        "confusion_matrix": "confusion_matrix.png",
        "reliability_diagram": "reliability_diagram.png",
    }
    markdown = paths["markdown"].read_text()
    accuracy = report["metrics"]["accuracy"]
    for fragment in (
        "## Summary",
        f"| Accuracy | {accuracy:.4f} |",
        "## Modality ablation",
        "| Input | Accuracy | Macro F1 | ECE |",
        "## Calibration",
        "| After scaling (as served) | 2 |",
        "## Per-class scores",
        "| Class | Precision | Recall | F1 | Support |",
        "| true \\ predicted | cat | dog | bird |",
        "![Reliability diagram](reliability_diagram.png)",
        "![Confusion matrix](confusion_matrix.png)",
    ):
        assert fragment in markdown, fragment
    matrix = report["metrics"]["confusion_matrix"]
    assert "| **dog** | " + " | ".join(map(str, matrix[1])) + " |" in markdown


def test_unknown_label_is_a_clear_error(optional: tuple[Path, TinyHead], tmp_path: Path) -> None:
    rows = [
        {"image": "0.png", "text": "a cat", "label": "cat"},
        {"image": "1.png", "text": "a fish", "label": "fish"},
    ]
    path = _write_dataset(tmp_path / "data", rows)
    with pytest.raises(DatasetError, match=r"line 2: label 'fish' is not one of the bundle"):
        evaluate(optional[0], path, cache_dir=None, progress=False)


def test_empty_split_exits_2_without_traceback(
    optional: tuple[Path, TinyHead], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"image": f"{i}.png", "text": "a cat", "label": lab} for i, lab in enumerate(LABELS)]
    path = _write_dataset(tmp_path / "data", rows)
    args = ["--bundle", str(optional[0]), "--dataset", str(path), "--out", str(tmp_path / "o")]
    assert main([*args, "--split", "val", "--no-progress", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no examples in split 'val'" in err
    assert not (tmp_path / "o").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_cli_evaluate(optional: tuple[Path, TinyHead], data: Path, tmp_path: Path) -> None:
    common = ["--bundle", str(optional[0]), "--no-progress", "--cache-dir", str(tmp_path / "c")]
    done = _cli(*common, "--dataset", str(data), "--out", str(tmp_path / "out"), "--bins", "10")
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout
    assert "Image only" in done.stdout
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["calibration"]["bins"] == 10
    assert len(saved["calibration"]["after"]["bins"]) == 10

    rows = [
        {"image": "0.png", "text": "a cat", "label": "cat"},
        {"image": "1.png", "text": "a cat", "label": "zebra"},
    ]
    bad = _write_dataset(tmp_path / "bad", rows)
    failed = _cli(*common, "--dataset", str(bad), "--out", str(tmp_path / "bad-out"))
    assert failed.returncode == 2
    assert "'zebra' is not one of the bundle tiny-test-bundle's labels" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (tmp_path / "bad-out").exists()
