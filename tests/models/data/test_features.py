"""Dataset features through the service's own pipeline, and their disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.core.engine import Engine
from models.data.dataset import load_dataset
from models.data.features import FeatureError, FeatureExtractor, load_engine
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import make_tiny_bundle

TEXTS = ["a small cat", "the big dog", "a small cat", "red bird photo"]


def _dataset(root: Path, broken: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, text in enumerate(TEXTS):
        name = f"{i}.png"
        (root / name).write_bytes(encode_image(photo(40 + i, 30, seed=i)))
        rows.append({"image": name, "text": text, "label": "cat" if i % 2 else "dog"})
    if broken:
        (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        rows.append({"image": "bad.png", "text": "a cat", "label": "cat"})
    path = root / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def engine(tiny_bundle_dir: Path) -> Engine:
    return load_engine(tiny_bundle_dir, threads=1)


def test_features_are_what_the_service_computes(engine: Engine, tmp_path: Path) -> None:
    dataset = load_dataset(_dataset(tmp_path / "data"))
    features = FeatureExtractor(engine, tmp_path / "cache", progress=False).extract(
        dataset.examples
    )
    pipeline = engine.pipeline
    for row, example in enumerate(dataset.examples):
        # The path of one /classify request: prepare, then the encoders, one item at a time.
        item = pipeline.prepare(example.image.read_bytes(), example.text)
        assert item.pixels is not None
        assert item.token_ids is not None
        np.testing.assert_array_equal(
            features.image[row], pipeline.encode_images(item.pixels[None])[0]
        )
        np.testing.assert_array_equal(
            features.text[row], pipeline.encode_texts([item.token_ids])[0]
        )
    assert features.image.shape == (4, 8)
    assert features.text.dtype == np.float32
    np.testing.assert_array_equal(features.text[0], features.text[2])  # same text, same row


def test_cache_is_reused_and_keyed_by_the_encoders(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = load_dataset(_dataset(tmp_path / "data"))
    cache = tmp_path / "cache"
    first = FeatureExtractor(engine, cache, progress=False).extract(dataset.examples)
    assert len(list(cache.glob("image-*/*.npz"))) == 1
    assert len(list(cache.glob("text-*/*.npz"))) == 1

    def refuse(*_: object) -> np.ndarray:
        raise AssertionError("a cached row was computed again")

    monkeypatch.setattr(engine.pipeline, "encode_images", refuse)
    monkeypatch.setattr(engine.pipeline, "encode_texts", refuse)
    again = FeatureExtractor(engine, cache, progress=False).extract(dataset.examples[::-1])
    np.testing.assert_array_equal(again.image, first.image[::-1])
    np.testing.assert_array_equal(again.text, first.text[::-1])
    monkeypatch.undo()

    # Other encoders (another seed): other cache directories, other rows.
    other_bundle = make_tiny_bundle(tmp_path / "other", seed=1)
    other = FeatureExtractor(load_engine(other_bundle, threads=1), cache, progress=False)
    changed = other.extract(dataset.examples)
    assert len(list(cache.glob("image-*"))) == 2
    assert not np.allclose(changed.image, first.image)


def test_bad_example_names_its_line(engine: Engine, tmp_path: Path) -> None:
    dataset = load_dataset(_dataset(tmp_path / "data", broken=True))
    extractor = FeatureExtractor(engine, None, progress=False)
    with pytest.raises(FeatureError, match=r"line 5: image .*bad\.png"):
        extractor.extract(dataset.examples)


def test_texts_alone_are_the_rows_extract_computes(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = load_dataset(_dataset(tmp_path / "data"))
    cache = tmp_path / "cache"
    extracted = FeatureExtractor(engine, cache, progress=False).extract(dataset.examples)
    # Same rows from a fresh cache (so computed here, not read back), in the given order.
    fresh = FeatureExtractor(engine, tmp_path / "fresh", progress=False)
    np.testing.assert_array_equal(fresh.texts(TEXTS), extracted.text)
    pipeline = engine.pipeline
    new = ["  a small cat  ", "a green frog"]  # cleaned as extract cleans: stripped
    alone = fresh.texts(new)
    np.testing.assert_array_equal(alone[0], extracted.text[0])
    expected = pipeline.encode_texts([pipeline.tokenizer.encode("a green frog")])[0]
    np.testing.assert_array_equal(alone[1], expected)

    def refuse(*_: object) -> np.ndarray:
        raise AssertionError("a cached row was computed again")

    monkeypatch.setattr(pipeline, "encode_texts", refuse)
    again = FeatureExtractor(engine, cache, progress=False).texts(TEXTS[::-1])
    np.testing.assert_array_equal(again, extracted.text[::-1])


def test_bad_text_names_its_position(engine: Engine) -> None:
    extractor = FeatureExtractor(engine, None, progress=False)
    with pytest.raises(FeatureError, match=r"^text 1: text must not be empty"):
        extractor.texts(["a cat", " \t "])
