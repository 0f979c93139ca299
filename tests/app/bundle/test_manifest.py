from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.bundle import load_bundle
from app.errors import BundleError
from tests.support.tiny_bundle import TAG_THRESHOLDS, make_tiny_multilabel_bundle, write_manifest


def _manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    return data


def test_valid_bundle_loads(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.manifest.name == "tiny-test-bundle"
    assert bundle.manifest.labels == ["cat", "dog", "bird"]
    assert bundle.manifest.image_encoder.preprocess.crop_size == 32


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("schema_version",), 3, "schema_version"),
        (("labels",), ["only-one"], "labels"),
        (("labels",), ["a", "a", "b"], "labels"),
        (("image_encoder", "sha256"), "abc", "image_encoder.sha256"),
        (("image_encoder", "file"), "../outside.onnx", "image_encoder.file"),
        (("image_encoder", "preprocess", "mean"), [1.0, 2.0], "image_encoder.preprocess"),
        (("image_encoder", "preprocess", "crop_size"), 64, "image_encoder.preprocess"),
        (("image_encoder", "preprocess", "layout"), "CHW", "image_encoder.preprocess.layout"),
        (("text_encoder", "max_length"), 0, "text_encoder.max_length"),
        (("fusion_head", "unknown_key"), 1, "fusion_head.unknown_key"),
    ],
)
def test_schema_errors_name_the_field(
    tiny_bundle: Path, path: tuple[str, ...], value: object, field: str
) -> None:
    manifest = _manifest(tiny_bundle)
    target = manifest
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    write_manifest(tiny_bundle, manifest)
    with pytest.raises(BundleError) as caught:
        load_bundle(tiny_bundle)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="manifest.json not found"):
        load_bundle(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as caught:
        load_bundle(tmp_path / "nope")
    assert caught.value.field == "bundle_path"


def test_invalid_json(tiny_bundle: Path) -> None:
    (tiny_bundle / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(tiny_bundle)


def test_missing_file_names_field(tiny_bundle: Path) -> None:
    (tiny_bundle / "tokenizer.json").unlink()
    with pytest.raises(BundleError) as caught:
        load_bundle(tiny_bundle)
    assert caught.value.field == "text_encoder.tokenizer.file"


def test_hash_mismatch_names_field(tiny_bundle: Path) -> None:
    with (tiny_bundle / "head.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError) as caught:
        load_bundle(tiny_bundle)
    assert caught.value.field == "fusion_head.sha256"
    # Hash verification is a setting; without it the (still valid) file loads.
    assert load_bundle(tiny_bundle, verify_hashes=False).manifest.name == "tiny-test-bundle"


def test_missing_model_card(tiny_bundle: Path) -> None:
    manifest = _manifest(tiny_bundle)
    manifest["model_card"] = "CARD.md"
    write_manifest(tiny_bundle, manifest)
    with pytest.raises(BundleError) as caught:
        load_bundle(tiny_bundle)
    assert caught.value.field == "model_card"


@pytest.fixture
def multilabel_bundle(tmp_path: Path) -> Path:
    make_tiny_multilabel_bundle(tmp_path / "multilabel")
    return tmp_path / "multilabel"


def test_a_multilabel_bundle_loads_with_its_thresholds(multilabel_bundle: Path) -> None:
    manifest = load_bundle(multilabel_bundle).manifest
    assert (manifest.task, manifest.multilabel) == ("multilabel", True)
    assert manifest.decision_thresholds() == TAG_THRESHOLDS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "multiclass"}, "apply to task 'multilabel' only"),
        ({"task": "binary"}, "task"),
        ({"thresholds": None}, "needs fusion_head.thresholds"),
        ({"thresholds": [0.5, 0.5]}, "2 values for 4 labels"),
        ({"thresholds": [0.5, 0.5, 0.5, 1.0]}, "less than 1"),
        ({"thresholds": [0.0, 0.5, 0.5, 0.5]}, "greater than 0"),
        ({"thresholds": [0.5, 0.5, 0.5, float("nan")]}, "thresholds"),
        ({"labels": ["furry|soft", "pet", "flying", "red"]}, "must not contain '|'"),
    ],
)
def test_multilabel_rules(multilabel_bundle: Path, change: dict[str, Any], message: str) -> None:
    manifest = _manifest(multilabel_bundle)
    if "thresholds" in change:
        manifest["fusion_head"]["thresholds"] = change["thresholds"]
    else:
        manifest |= change
    (multilabel_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(multilabel_bundle)


def test_a_multiclass_bundle_has_no_thresholds(tiny_bundle: Path) -> None:
    manifest = _manifest(tiny_bundle)
    manifest["fusion_head"]["thresholds"] = [0.5, 0.5, 0.5]
    write_manifest(tiny_bundle, manifest)
    with pytest.raises(BundleError, match="apply to task 'multilabel' only"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize(
    ("section", "fields", "named"),
    [
        ("preprocess", {"crop_offset_rounding": "floor"}, "preprocess.crop_offset_rounding"),
        ("preprocess", {"rescale_factor": 0.5, "mean": [0.0] * 3}, "preprocess.rescale_factor"),
        ("preprocess", {"interpolation": "box"}, "preprocess.interpolation"),
        (
            "preprocess",
            {"resize": "exact", "resize_height": 32, "resize_width": 32, "resize_short_side": None},
            "preprocess.resize, preprocess.resize_height, preprocess.resize_width",
        ),
        ("text", {"padding": "max_length"}, "padding"),
        ("text", {"prompt": "query: "}, "prompt"),
    ],
)
def test_version_2_fields_need_schema_version_2(
    tiny_bundle: Path, section: str, fields: dict[str, Any], named: str
) -> None:
    manifest = _manifest(tiny_bundle)
    target = (
        manifest["image_encoder"]["preprocess"]
        if section == "preprocess"
        else manifest["text_encoder"]
    )
    target |= fields
    write_manifest(tiny_bundle, manifest)
    with pytest.raises(BundleError) as caught:
        load_bundle(tiny_bundle)
    assert caught.value.field == ("image_encoder" if section == "preprocess" else "text_encoder")
    assert f"{named} need(s) schema_version 2" in str(caught.value)
    manifest["schema_version"] = 2
    write_manifest(tiny_bundle, manifest)
    loaded = load_bundle(tiny_bundle).manifest
    assert loaded.schema_version == 2
    changed = (
        loaded.image_encoder.preprocess.version_2_fields()
        if section == "preprocess"
        else loaded.text_encoder.version_2_fields()
    )
    assert (
        ", ".join(f"preprocess.{name}" if section == "preprocess" else name for name in changed)
        == named
    )


def test_a_version_1_manifest_reads_as_before(tiny_bundle: Path) -> None:
    preprocess = load_bundle(tiny_bundle).manifest.image_encoder.preprocess
    assert preprocess.version_2_fields() == []
    assert (preprocess.resize, preprocess.short_side) == (
        "short_side",
        preprocess.resize_short_side,
    )
    assert preprocess.output_size == (preprocess.crop_size, preprocess.crop_size)
