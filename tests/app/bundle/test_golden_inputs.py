"""Golden inputs in the manifest (schema version 2) and their file, golden.json."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.bundle import load_bundle, load_encoder_bundle
from app.bundle.golden_inputs import GOLDEN_MAX_BYTES, parse_golden, read_golden
from app.bundle.loader import sha256_file
from app.bundle.manifest import DEFAULT_MIN_COSINE, GoldenInputs, Manifest
from app.errors import BundleError
from tests.support.tiny_bundle import (
    IMAGE_DIM,
    TEXT_DIM,
    add_golden,
    make_tiny_base_bundle,
    make_tiny_bundle,
)

DIMS = {"image_dim": IMAGE_DIM, "text_dim": TEXT_DIM}


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tiny_bundle(tmp_path_factory.mktemp("golden") / "bundle")
    add_golden(root)
    return root


@pytest.fixture
def golden_bundle(golden_dir: Path, tmp_path: Path) -> Path:
    """A private copy of a tiny bundle with golden inputs, that a test may break."""
    return Path(shutil.copytree(golden_dir, tmp_path / "bundle"))


def _read(root: Path, name: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((root / name).read_text(encoding="utf-8"))
    return raw


def _golden_file(root: Path) -> dict[str, Any]:
    return _read(root, "golden.json")


def _parse_error(raw: dict[str, Any]) -> BundleError:
    with pytest.raises(BundleError) as caught:
        parse_golden(json.dumps(raw).encode(), DIMS)
    return caught.value


def test_a_bundle_with_golden_inputs_loads_and_lists_them_as_encoder_files(
    golden_bundle: Path,
) -> None:
    manifest = load_bundle(golden_bundle).manifest
    assert manifest.schema_version == 2
    assert manifest.golden is not None
    assert manifest.golden.file == "golden.json"
    assert manifest.golden.min_cosine == DEFAULT_MIN_COSINE
    assert manifest.encoder_files()["golden"] == manifest.golden
    assert manifest.files()["golden"] == manifest.golden
    golden = read_golden(load_bundle(golden_bundle))
    assert golden is not None
    assert [image.name for image in golden.images] == [
        "gradient.png",
        "photo.jpg",
        "grey.png",
        "transparent.png",
    ]
    assert len(golden.texts) == 4
    assert set(golden.exported_with) >= {"onnxruntime", "Pillow", "numpy"}


def test_a_base_bundle_carries_golden_inputs_too(tmp_path: Path) -> None:
    base = make_tiny_base_bundle(tmp_path / "base")
    add_golden(base)
    manifest = load_encoder_bundle(base).manifest
    assert "golden" in manifest.encoder_files()
    assert read_golden(load_encoder_bundle(base)) is not None


def test_a_bundle_without_golden_inputs_has_none(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.manifest.golden is None
    assert "golden" not in bundle.manifest.files()
    assert read_golden(bundle) is None


def test_a_version_1_manifest_with_golden_inputs_is_refused(golden_bundle: Path) -> None:
    manifest = _read(golden_bundle, "manifest.json") | {"schema_version": 1}
    (golden_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as caught:
        load_bundle(golden_bundle)
    assert caught.value.field == "golden"
    assert "golden need(s) schema_version 2" in str(caught.value)


@pytest.mark.parametrize("min_cosine", [0.0, -0.5, 1.0001, float("nan")])
def test_min_cosine_is_in_0_1(golden_bundle: Path, min_cosine: float) -> None:
    manifest = _read(golden_bundle, "manifest.json")
    manifest["golden"]["min_cosine"] = min_cosine
    with pytest.raises(ValueError, match="min_cosine"):
        Manifest.model_validate(manifest)
    assert GoldenInputs.model_validate(manifest["golden"] | {"min_cosine": 1.0}).min_cosine == 1


def test_a_changed_golden_file_fails_the_hash_check(golden_bundle: Path) -> None:
    golden = _golden_file(golden_bundle)
    golden["texts"][0]["embedding"][0] += 1.0
    (golden_bundle / "golden.json").write_text(json.dumps(golden))
    with pytest.raises(BundleError) as caught:
        load_bundle(golden_bundle)
    assert caught.value.field == "golden.sha256"
    with pytest.raises(BundleError) as caught:
        load_encoder_bundle(golden_bundle)
    assert caught.value.field == "golden.sha256"


def test_a_missing_golden_file_names_the_field(golden_bundle: Path) -> None:
    (golden_bundle / "golden.json").unlink()
    with pytest.raises(BundleError) as caught:
        load_bundle(golden_bundle)
    assert caught.value.field == "golden.file"


def _set_image_embedding(raw: dict[str, Any]) -> None:
    raw["images"][2]["embedding"] = raw["images"][2]["embedding"][:-1]


def _set_text_embedding(raw: dict[str, Any]) -> None:
    raw["texts"][1]["embedding"].append(0.5)


def _no_images(raw: dict[str, Any]) -> None:
    raw["images"] = []


def _no_texts(raw: dict[str, Any]) -> None:
    raw["texts"] = []


def _bad_base64(raw: dict[str, Any]) -> None:
    raw["images"][1]["data_base64"] = "not base64!"


def _nan(raw: dict[str, Any]) -> None:
    raw["texts"][0]["embedding"][0] = float("nan")


def _same_names(raw: dict[str, Any]) -> None:
    raw["images"][1]["name"] = raw["images"][0]["name"]


def _odd_name(raw: dict[str, Any]) -> None:
    raw["images"][3]["name"] = "../../etc/passwd"


def _extra_field(raw: dict[str, Any]) -> None:
    raw["texts"][2]["label"] = "cat"


def _text_as_number(raw: dict[str, Any]) -> None:
    raw["texts"][3]["text"] = 12


def _empty_text(raw: dict[str, Any]) -> None:
    raw["texts"][0]["text"] = ""


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (_set_image_embedding, "golden.images.2.embedding", f"embedding_dim is {IMAGE_DIM}"),
        (_set_text_embedding, "golden.texts.1.embedding", f"embedding_dim is {TEXT_DIM}"),
        (_no_images, "golden.images", "at least 1"),
        (_no_texts, "golden.texts", "at least 1"),
        (_bad_base64, "golden.images.1.data_base64", "not valid base64"),
        (_nan, "golden.texts.0.embedding.0", "finite"),
        (_same_names, "golden.images", "unique names"),
        (_odd_name, "golden.images.3.name", "pattern"),
        (_extra_field, "golden.texts.2.label", "Extra inputs"),
        (_text_as_number, "golden.texts.3.text", "string"),
        (_empty_text, "golden.texts.0.text", "at least 1"),
    ],
)
def test_malformed_golden_files_name_the_entry(
    golden_dir: Path, change: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    raw = _golden_file(golden_dir)
    change(raw)
    error = _parse_error(raw)
    assert error.field == field
    assert message in str(error)


def test_embeddings_are_checked_against_the_encoders_only_with_their_dimensions(
    golden_dir: Path,
) -> None:
    raw = _golden_file(golden_dir)
    _set_text_embedding(raw)
    assert len(parse_golden(json.dumps(raw).encode()).texts[1].embedding) == TEXT_DIM + 1


def test_a_golden_file_that_is_not_json_or_too_large_is_refused(golden_bundle: Path) -> None:
    with pytest.raises(BundleError) as caught:
        parse_golden(b"{not json", DIMS)
    assert caught.value.field == "golden.file"
    with pytest.raises(BundleError) as caught:
        parse_golden(b" " * (GOLDEN_MAX_BYTES + 1), DIMS)
    assert caught.value.field == "golden.file"
    assert "at most" in str(caught.value)
    (golden_bundle / "golden.json").write_bytes(b" " * (GOLDEN_MAX_BYTES + 1))
    manifest = _read(golden_bundle, "manifest.json")
    manifest["golden"]["sha256"] = sha256_file(golden_bundle / "golden.json")
    (golden_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as caught:
        read_golden(load_bundle(golden_bundle))
    assert caught.value.field == "golden.file"


def test_a_golden_image_is_its_file_bytes(golden_dir: Path) -> None:
    golden = parse_golden((golden_dir / "golden.json").read_bytes(), DIMS)
    photo = golden.images[1]
    assert photo.data()[:3] == b"\xff\xd8\xff"  # a JPEG file, as a client would send it
    assert base64.b64encode(photo.data()).decode() == photo.data_base64
