"""The manifest must agree with the ONNX graphs; start-up names the field that does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config.settings import Settings
from app.core.engine import build_engine
from app.errors import BundleError
from tests.support import tiny_bundle as tiny


def _settings(root: Path) -> Settings:
    return Settings(bundle_path=root, device="cpu", intra_op_threads=1)


def _edit(root: Path, *path: str, value: object) -> None:
    manifest: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    target = manifest
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    tiny.write_manifest(root, manifest)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("image_encoder", "input"), "pixels", "image_encoder.input"),
        (("image_encoder", "output"), "logits", "image_encoder.output"),
        (("image_encoder", "embedding_dim"), 16, "image_encoder.output"),
        (("text_encoder", "input_ids"), "ids", "text_encoder.input_ids"),
        (("text_encoder", "attention_mask"), None, "text_encoder"),
        (("text_encoder", "token_type_ids"), "token_type_ids", "text_encoder.token_type_ids"),
        (("text_encoder", "embedding_dim"), 5, "text_encoder.output"),
        (("fusion_head", "image_input"), "img", "fusion_head.image_input"),
        (("fusion_head", "output"), "probs", "fusion_head.output"),
    ],
)
def test_graph_mismatch_names_field(
    tiny_bundle: Path, path: tuple[str, ...], value: object, field: str
) -> None:
    _edit(tiny_bundle, *path, value=value)
    with pytest.raises(BundleError) as caught:
        build_engine(_settings(tiny_bundle))
    assert caught.value.field == field


def test_crop_size_must_match_graph(tiny_bundle: Path) -> None:
    _edit(tiny_bundle, "image_encoder", "preprocess", "crop_size", value=30)
    with pytest.raises(BundleError, match="axis 2") as caught:
        build_engine(_settings(tiny_bundle))
    assert caught.value.field == "image_encoder.input"


def test_label_count_must_match_head(tiny_bundle: Path) -> None:
    _edit(tiny_bundle, "labels", value=["a", "b", "c", "d"])
    with pytest.raises(BundleError, match="4 labels but the fusion head outputs 3") as caught:
        build_engine(_settings(tiny_bundle))
    assert caught.value.field == "labels"


def test_head_with_wrong_width_is_rejected(tiny_bundle: Path) -> None:
    tiny.fusion_head(tiny_bundle / "head.onnx", np.random.default_rng(1), classes=5)
    manifest = tiny.manifest_dict(tiny_bundle)  # fresh hashes
    tiny.write_manifest(tiny_bundle, manifest)
    with pytest.raises(BundleError) as caught:
        build_engine(_settings(tiny_bundle))
    assert caught.value.field == "labels"
