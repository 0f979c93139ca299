"""``evaluate`` on multilabel bundles: the files it writes (JSON, Markdown, PNGs), a label without
positives, a head that outputs probabilities, errors, the command line, and the multiclass
report's unchanged schema. Fixtures are in this folder's conftest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image
from sklearn.metrics import log_loss

from app.bundle.loader import sha256_file
from models.data.dataset import DatasetError
from models.evaluation.evaluate import NOT_SUPPORTED, evaluate, main, write_report
from tests.models.evaluation.multilabel_expected import (
    ece_by_hand,
    expected_outputs,
    sklearn_scores,
)
from tests.support.multilabel_dataset import TAG_RATES, write_multilabel_dataset
from tests.support.repo_paths import ROOT as REPO
from tests.support.synthetic_dataset import write_dataset
from tests.support.tiny_bundle import TAGS, TinyHead, make_tiny_multilabel_bundle


def test_report_files(ml_report: dict[str, Any], tmp_path: Path) -> None:
    paths = write_report(dict(ml_report), tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "report.json",
        "report.md",
        "per_label_f1.png",
        "precision_recall.png",
        "reliability_diagram.png",
    }
    for name in ("per_label_f1", "precision_recall", "reliability_diagram"):
        with Image.open(paths[name]) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert 400 <= width <= 3000, name
            assert 300 <= height <= 3000, name
            assert len(np.unique(np.asarray(image.convert("L")))) > 10, name  # drawn, not blank
    saved = json.loads(paths["json"].read_text())
    assert saved["metrics"] == ml_report["metrics"]
    assert saved["calibration"] == ml_report["calibration"]
    assert saved["images"] == {
        "per_label_f1": "per_label_f1.png",
        "precision_recall": "precision_recall.png",
        "reliability_diagram": "reliability_diagram.png",
    }
    markdown = paths["markdown"].read_text()
    metrics = ml_report["metrics"]
    for fragment in (
        "(multilabel)",
        "## Summary",
        f"| Micro F1 | {metrics['micro_f1']:.4f} |",
        f"| mAP (over 4 of 4 labels) | {metrics['mean_average_precision']:.4f} |",
        f"| Subset accuracy (exact label set) | {metrics['subset_accuracy']:.4f} |",
        "## Modality ablation",
        "| Input | Micro F1 | Macro F1 | mAP | Subset accuracy | Mean ECE |",
        "## Per-label scores",
        "| Label | Threshold | Precision | Recall | F1 | Support | Predicted | AP | ECE |",
        "| furry | 0.5 |",
        "## Precision-recall curves",
        "## Calibration",
        "over 15 equal-width bins",
        "| After scaling (as served) | 2 |",
        "![Per-label F1](per_label_f1.png)",
        "![Precision-recall curves](precision_recall.png)",
        "![Per-label reliability diagram](reliability_diagram.png)",
    ):
        assert fragment in markdown, fragment


def test_a_label_without_positives_is_named_and_left_out_of_map(tmp_path: Path) -> None:
    """No item of the split has "red": no AP, no curve, and mAP is the other three's mean."""
    root = tmp_path / "bundle"
    make_tiny_multilabel_bundle(root, presence=False)
    data = write_multilabel_dataset(
        tmp_path / "data", {"test": 20}, rates=TAG_RATES | {"red": 0.0}, with_split=False
    )
    result = evaluate(root, data, cache_dir=None, progress=False)
    assert result["dataset"]["split"] == "all"
    metrics = result["metrics"]
    assert metrics["average_precision_skipped"] == ["red"]
    red = metrics["per_label"][3]
    assert (red["support"], red["average_precision"]) == (0, None)
    others = [row["average_precision"] for row in metrics["per_label"][:3]]
    assert metrics["mean_average_precision"] == pytest.approx(np.mean(others))
    assert result["precision_recall_curves"]["labels"][3] == {"label": "red", "positives": 0}
    rows = {row["input"]: row for row in result["ablation"]}
    assert rows["fused"]["supported"] is True
    for name in ("image_only", "text_only"):  # a head without presence inputs
        assert rows[name] == {
            "input": name,
            "title": rows[name]["title"],
            "supported": False,
            "note": NOT_SUPPORTED,
        }
    paths = write_report(result, tmp_path / "out")
    markdown = paths["markdown"].read_text()
    assert "| mAP (over 3 of 4 labels) |" in markdown
    assert "leaves out the labels without a positive item: red." in markdown
    assert f"| Image only | {NOT_SUPPORTED} |" in markdown
    assert "| red | 0.55 |" in markdown
    with Image.open(paths["precision_recall"]) as image:
        assert image.format == "PNG"


def test_probabilities_head_reports_that_scaling_does_not_apply(tmp_path: Path) -> None:
    """A head that applies its own sigmoid: its outputs are served as they are."""
    root = tmp_path / "bundle"
    make_tiny_multilabel_bundle(root, presence=True)
    model = onnx.load(str(root / "head.onnx"))
    model.graph.node.append(helper.make_node("Sigmoid", ["logits"], ["probs"]))
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["batch", len(TAGS)])
    )
    onnx.save(model, str(root / "head.onnx"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["fusion_head"] |= {
        "sha256": sha256_file(root / "head.onnx"),
        "output": "probs",
        "output_type": "probabilities",
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    data = write_multilabel_dataset(
        tmp_path / "data", {"test": 20}, rates=TAG_RATES, with_split=False
    )
    result = evaluate(root, data, cache_dir=None, progress=False)
    calibration = result["calibration"]
    assert set(calibration) == {"applies", "note", "bins", "served"}
    assert calibration["applies"] is False
    assert "does not apply" in calibration["note"]
    expected = expected_outputs(root, data)
    y, served = expected["y"], expected["served"]
    eces = [ece_by_hand(served[:, i].astype(np.float64), y[:, i], 15) for i in range(len(TAGS))]
    assert calibration["served"]["temperature"] is None
    assert calibration["served"]["mean_ece"] == pytest.approx(np.mean(eces), abs=1e-6)
    bce = np.mean([log_loss(y[:, i], served[:, i], labels=[0, 1]) for i in range(len(TAGS))])
    assert calibration["served"]["binary_cross_entropy"] == pytest.approx(bce, abs=1e-5)
    for name, value in sklearn_scores(y, expected["predicted"], served).items():
        assert result["metrics"][name] == pytest.approx(value), name
    paths = write_report(result, tmp_path / "out")
    assert "does not apply" in paths["markdown"].read_text()
    with Image.open(paths["reliability_diagram"]) as image:
        assert image.size[0] > 300


def test_unknown_tag_is_a_clear_error(ml_bundle: tuple[Path, TinyHead], tmp_path: Path) -> None:
    path = write_multilabel_dataset(
        tmp_path / "data", {"test": 4}, rates=TAG_RATES, with_split=False
    )
    lines = path.read_text().splitlines()
    lines[2] = json.dumps(json.loads(lines[2]) | {"label": ["pet", "striped"]})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 3: .*'striped' is not in the labels of the"):
        evaluate(ml_bundle[0], path, cache_dir=None, progress=False)


def test_multiclass_report_schema_is_unchanged(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """A multiclass report has exactly its former fields (no ``task``, no multilabel ones)."""
    data = write_dataset(tmp_path / "data", {"test": 6})
    result = evaluate(tiny_bundle_dir, data, cache_dir=None, progress=False)
    assert list(result) == ["bundle", "dataset", "metrics", "calibration", "ablation", "timings"]
    assert list(result["bundle"]) == [
        "path",
        "name",
        "version",
        "labels",
        "head_file",
        "head_sha256",
        "output_type",
        "temperature",
        "accepts_missing",
        "providers",
    ]
    assert set(result["metrics"]) == {
        "accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "per_class",
        "confusion_matrix",
    }


def test_main_prints_the_multilabel_summary(
    ml_bundle: tuple[Path, TinyHead],
    ml_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "--bundle",
        str(ml_bundle[0]),
        "--dataset",
        str(ml_data),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*args, "--no-progress", "--cache-dir", str(tmp_path / "c"), "--bins", "10"]) == 0
    out = capsys.readouterr().out
    for fragment in ("micro-F1", "mAP", "subset accuracy", "mean per-label ECE", "Image only"):
        assert fragment in out, fragment
    assert "per_label_f1.png, precision_recall.png, reliability_diagram.png" in out
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["calibration"]["bins"] == 10
    assert len(saved["calibration"]["after"]["per_label"][0]["bins"]) == 10


def test_cli_evaluate_multilabel(
    ml_bundle: tuple[Path, TinyHead], ml_data: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "evaluate",
            "--bundle",
            str(ml_bundle[0]),
            "--dataset",
            str(ml_data),
            "--out",
            str(tmp_path / "out"),
            "--split",
            "all",
            "--no-progress",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "micro-F1" in done.stdout
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["task"] == "multilabel"
    assert saved["dataset"]["examples"] == 60
