"""Writing a bundle's golden inputs: the default inputs, the file and the manifest's entry."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from app.bundle.golden_inputs import read_golden
from app.bundle.loader import load_encoder_bundle, sha256_file
from app.core.encoders import Encoders, build_encoders
from app.core.golden_check import check_golden_inputs, golden_embeddings
from models.encoders.golden_writer import (
    GOLDEN_FILE,
    golden_images,
    golden_texts,
    rewrite_golden,
    write_golden,
)
from tests.support.app_setup import make_settings
from tests.support.tiny_bundle import make_tiny_base_bundle, write_manifest


@pytest.fixture
def encoders(tmp_path: Path) -> Encoders:
    return build_encoders(make_settings(make_tiny_base_bundle(tmp_path / "base")))


def test_the_default_inputs_are_small_varied_and_always_the_same() -> None:
    images = golden_images()
    assert images == golden_images()
    opened = {name: Image.open(io.BytesIO(data)) for name, data in images.items()}
    assert {name: (image.format, image.mode, image.size) for name, image in opened.items()} == {
        "gradient.png": ("PNG", "RGB", (97, 61)),
        "photo.jpg": ("JPEG", "RGB", (120, 80)),
        "grey.png": ("PNG", "L", (64, 48)),
        "transparent.png": ("PNG", "RGBA", (50, 70)),
    }
    assert all(len(data) < 30_000 for data in images.values())
    texts = golden_texts()
    assert texts == golden_texts()
    assert len(texts) == 4
    assert any(not text.isascii() for text in texts)
    assert max(len(text) for text in texts) > 500


def test_write_golden_writes_the_served_embeddings_and_returns_the_entry(
    encoders: Encoders,
) -> None:
    root = encoders.bundle.root
    images, texts = golden_images(), golden_texts()
    entry = write_golden(root, encoders.pipeline, images, texts, min_cosine=0.999)
    assert entry == {
        "file": GOLDEN_FILE,
        "sha256": sha256_file(root / GOLDEN_FILE),
        "min_cosine": 0.999,
    }
    raw = json.loads((root / "manifest.json").read_text())
    write_manifest(root, raw | {"schema_version": 2, "golden": entry})
    bundle = load_encoder_bundle(root)
    golden = read_golden(bundle)
    assert golden is not None
    assert [image.name for image in golden.images] == list(images)
    assert [image.data() for image in golden.images] == list(images.values())
    assert [text.text for text in golden.texts] == texts
    served_images, served_texts = golden_embeddings(encoders.pipeline, list(images.values()), texts)
    stored = np.array([image.embedding for image in golden.images], dtype=np.float32)
    np.testing.assert_array_equal(stored, served_images)  # float32 values written exactly
    stored = np.array([text.embedding for text in golden.texts], dtype=np.float32)
    np.testing.assert_array_equal(stored, served_texts)
    result = check_golden_inputs(bundle, encoders.pipeline)
    assert result is not None
    assert result.lowest_cosine == pytest.approx(1.0, abs=1e-6)
    assert (result.images, result.texts) == (4, 4)


def test_the_default_tolerance_and_its_bounds(encoders: Encoders) -> None:
    root, pipeline = encoders.bundle.root, encoders.pipeline
    assert write_golden(root, pipeline, golden_images(), ["a cat"])["min_cosine"] == 0.9999
    with pytest.raises(ValidationError):
        write_golden(root, pipeline, golden_images(), ["a cat"], min_cosine=1.5)


def test_rewrite_golden_keeps_the_inputs_with_new_embeddings(
    encoders: Encoders, tmp_path: Path
) -> None:
    source = encoders.bundle.root
    write_golden(source, encoders.pipeline, golden_images(), golden_texts())
    golden = read_golden(load_encoder_bundle(_with_golden(source)))
    assert golden is not None
    other = build_encoders(make_settings(make_tiny_base_bundle(tmp_path / "other", seed=1)))
    entry = rewrite_golden(golden, other.bundle.root, other.pipeline, 0.99)
    assert entry["min_cosine"] == 0.99
    rewritten = read_golden(load_encoder_bundle(_with_golden(other.bundle.root, entry)))
    assert rewritten is not None
    assert [i.data_base64 for i in rewritten.images] == [i.data_base64 for i in golden.images]
    assert [t.text for t in rewritten.texts] == [t.text for t in golden.texts]
    assert rewritten.images[0].embedding != golden.images[0].embedding


def _with_golden(root: Path, entry: dict[str, object] | None = None) -> Path:
    golden = entry or {"file": GOLDEN_FILE, "sha256": sha256_file(root / GOLDEN_FILE)}
    raw = json.loads((root / "manifest.json").read_text())
    write_manifest(root, raw | {"schema_version": 2, "golden": golden})
    return root
