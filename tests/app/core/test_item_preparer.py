"""The preparer alone (``build_preparer``) prepares what the engine's own prepares, and loads
no model: a bundle whose model files are not models still gives one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.core.classification import ClassifyInput
from app.core.engine import build_engine
from app.core.item_preparer import build_preparer
from app.errors import RequestError, StartupError, UnsupportedImageFormat
from tests.support.app_setup import make_settings
from tests.support.images import encode_image, photo

TEXT = "  a red   shirt "


def test_it_prepares_what_the_engine_prepares(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir)
    engine = build_engine(settings)
    alone = build_preparer(settings)
    image = encode_image(photo(seed=3))
    served = engine.prepare(image, TEXT)
    item = alone.policy.check(ClassifyInput(image, TEXT))
    assert item.text == served.text
    assert item.image is not None
    assert served.pixels is not None
    assert served.token_ids is not None
    np.testing.assert_array_equal(alone.decode(item.image), served.pixels)
    np.testing.assert_array_equal(alone.tokenise(item.text), served.token_ids)
    assert engine.preparer.policy is engine.policy


def test_it_loads_no_model(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))
    for model in bundle.glob("*.onnx"):
        model.write_bytes(b"not a model")
    settings = make_settings(bundle, verify_bundle_hashes=False)
    with pytest.raises(StartupError):
        build_engine(settings)
    preparer = build_preparer(settings)
    assert preparer.decode(encode_image(photo(seed=1))).dtype == np.float32
    with pytest.raises(UnsupportedImageFormat):
        preparer.decode(b"not an image")


def test_its_policy_has_the_service_limits(tiny_bundle_dir: Path) -> None:
    preparer = build_preparer(make_settings(tiny_bundle_dir, max_text_chars=5))
    with pytest.raises(RequestError):
        preparer.policy.check(ClassifyInput(None, "far longer than five characters"))


@pytest.mark.parametrize("size", [0, 3])
def test_the_token_memo_is_as_large_as_the_text_cache(tiny_bundle_dir: Path, size: int) -> None:
    preparer = build_preparer(make_settings(tiny_bundle_dir, text_cache_size=size))
    first = preparer.tokenise("a red shirt")
    repeated = preparer.tokenise("a red shirt")
    np.testing.assert_array_equal(first, repeated)
    assert (repeated is first) == (size > 0)
