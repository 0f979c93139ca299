"""A base bundle (encoders, no head): refused by the service, loaded for embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.bundle import load_bundle, load_encoder_bundle
from app.core.encoders import build_encoders
from app.core.engine import build_engine
from app.errors import BundleError
from tests.support.app_setup import make_settings
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import make_tiny_base_bundle, make_tiny_bundle


def test_the_service_refuses_a_base_bundle_saying_what_to_do(tmp_path: Path) -> None:
    base = make_tiny_base_bundle(tmp_path / "base")
    with pytest.raises(BundleError) as caught:
        load_bundle(base)
    assert caught.value.field == "fusion_head"
    assert "train-head --base-bundle" in str(caught.value)
    assert load_encoder_bundle(base).manifest.name == "tiny-test-bundle"


def test_a_base_bundle_is_checked_as_strictly_as_a_servable_one(tmp_path: Path) -> None:
    base = make_tiny_base_bundle(tmp_path / "base")
    with (base / "tokenizer.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(BundleError) as caught:
        load_encoder_bundle(base)
    assert caught.value.field == "text_encoder.tokenizer.sha256"
    manifest = json.loads((base / "manifest.json").read_text())
    manifest["labels"] = ["a", "b"]  # labels without a head: neither kind of bundle
    (base / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as caught:
        load_encoder_bundle(base)
    assert caught.value.field == "fusion_head"


def test_base_bundle_embeddings_are_the_servable_bundles(tmp_path: Path) -> None:
    full = make_tiny_bundle(tmp_path / "full")
    base = make_tiny_base_bundle(tmp_path / "base")
    encoders = build_encoders(make_settings(base))
    engine = build_engine(make_settings(full))
    assert set(encoders.providers) == {"image_encoder", "text_encoder"}
    image = encode_image(photo(90, 60))
    for pipeline in (encoders.pipeline, engine.pipeline):
        item = pipeline.prepare(image, "a small red cat")
        assert item.pixels is not None
        assert item.token_ids is not None
    ours, theirs = (
        (
            p.encode_images(np.stack([p.decoder(image)])),
            p.encode_texts([p.tokenizer.encode("a small red cat")]),
        )
        for p in (encoders.pipeline, engine.pipeline)
    )
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert encoders.max_text_chars == engine.max_text_chars
