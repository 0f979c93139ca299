"""The golden inputs check at load: a bundle that answers differently here is never ready."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.bundle.loader import sha256_file
from app.core.encoders import build_encoders
from app.core.engine import build_engine
from app.core.golden_check import cosines, golden_embeddings, runtime_versions
from app.errors import BundleError
from app.main import create_app
from tests.support.app_setup import classify_files, make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import add_golden, make_tiny_base_bundle, make_tiny_bundle


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tiny_bundle(tmp_path_factory.mktemp("golden") / "bundle")
    add_golden(root)
    return root


@pytest.fixture
def golden_bundle(golden_dir: Path, tmp_path: Path) -> Path:
    """A private copy of a tiny bundle with golden inputs, that a test may break."""
    return Path(shutil.copytree(golden_dir, tmp_path / "bundle"))


def _negated(embedding: list[float]) -> list[float]:
    return [-value for value in embedding]


def _tamper(
    root: Path,
    section: str,
    index: int,
    edit: Callable[[list[float]], list[float]] = _negated,
) -> None:
    """Change one stored embedding with ``edit`` (by default, point it the other way) and
    give the manifest the file's new hash: drift, not a broken file."""
    path = root / "golden.json"
    golden: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    entry = golden[section][index]
    entry["embedding"] = edit(entry["embedding"])
    path.write_text(json.dumps(golden), encoding="utf-8")
    _rehash(root)


def _rehash(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    manifest["golden"]["sha256"] = sha256_file(root / "golden.json")
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _set_min_cosine(root: Path, value: float) -> None:
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    manifest["golden"]["min_cosine"] = value
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_a_bundle_whose_golden_inputs_match_becomes_ready(golden_dir: Path) -> None:
    with TestClient(create_app(make_settings(golden_dir))) as client:
        wait_ready(client)
        response = client.post(
            "/classify", files=classify_files(encode_image(photo(40, 40)), "a small cat")
        )
        assert response.status_code == 200, response.text


def test_drifted_golden_inputs_keep_the_service_not_ready(golden_bundle: Path) -> None:
    _tamper(golden_bundle, "images", 1)
    with TestClient(create_app(make_settings(golden_bundle))) as client:
        for _ in range(500):
            if client.get("/readyz").json()["status"] == "failed":
                break
            threading.Event().wait(0.01)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        detail = ready.json()["detail"]
        assert "golden.images.1" in detail
        assert "image 'photo.jpg' has cosine " in detail
        assert "min_cosine 0.9999" in detail
        for name, version in runtime_versions().items():
            assert f"{name} {version}" in detail
        assert "answers differently here than where it was exported" in detail
        response = client.post("/classify", files=classify_files(None, "a small cat"))
        assert response.status_code == 503


def test_every_drifted_input_is_named_with_its_cosine(golden_bundle: Path) -> None:
    _tamper(golden_bundle, "texts", 2)
    _tamper(golden_bundle, "images", 3)
    with pytest.raises(BundleError) as caught:
        build_engine(make_settings(golden_bundle))
    assert caught.value.field == "golden.images.3"
    message = str(caught.value)
    assert "2 golden input(s)" in message
    assert "image 'transparent.png' has cosine" in message
    assert "text 2 (" in message
    assert "providers image_encoder CPUExecutionProvider" in message


def test_the_tolerance_is_the_manifests(golden_bundle: Path) -> None:
    _tamper(golden_bundle, "texts", 0, lambda e: [e[0] * 1.5, *e[1:]])  # a small turn
    with pytest.raises(BundleError) as caught:
        build_engine(make_settings(golden_bundle))
    assert caught.value.field == "golden.texts.0"
    _set_min_cosine(golden_bundle, 0.5)
    assert build_engine(make_settings(golden_bundle)).bundle.manifest.golden is not None


def test_cosine_compares_directions_not_lengths(golden_bundle: Path) -> None:
    _tamper(golden_bundle, "images", 0, lambda e: [value * 3.0 for value in e])
    build_engine(make_settings(golden_bundle))


def test_the_tools_build_encoders_checks_them_too(tmp_path: Path) -> None:
    base = make_tiny_base_bundle(tmp_path / "base")
    add_golden(base)
    assert build_encoders(make_settings(base)).bundle.manifest.golden is not None
    _tamper(base, "images", 0)
    with pytest.raises(BundleError) as caught:
        build_encoders(make_settings(base))
    assert caught.value.field == "golden.images.0"
    assert "image 'gradient.png'" in str(caught.value)


def test_the_check_can_be_switched_off(golden_bundle: Path) -> None:
    _tamper(golden_bundle, "images", 1)
    engine = build_engine(make_settings(golden_bundle, verify_golden_inputs=False))
    assert engine.bundle.manifest.golden is not None


def test_a_golden_input_the_settings_refuse_is_named(golden_bundle: Path) -> None:
    with pytest.raises(BundleError) as caught:
        build_engine(make_settings(golden_bundle, min_image_side=62))
    assert caught.value.field == "golden.images.0"  # 97x61
    assert "the service refuses this image" in str(caught.value)


def test_the_check_leaves_the_text_cache_empty(golden_dir: Path) -> None:
    engine = build_engine(make_settings(golden_dir, text_cache_size=64))
    assert len(engine.pipeline.text_cache) == 0


def test_golden_embeddings_are_the_served_ones(golden_dir: Path) -> None:
    engine = build_engine(make_settings(golden_dir))
    pipeline = engine.pipeline
    image = encode_image(photo(70, 50))
    images, texts = golden_embeddings(pipeline, [image], ["  a big dog "])
    item = engine.prepare(image, "  a big dog ")
    assert item.pixels is not None
    assert item.token_ids is not None
    np.testing.assert_array_equal(images[0], pipeline.encode_images(item.pixels[None])[0])
    np.testing.assert_array_equal(texts[0], pipeline.encode_texts([item.token_ids])[0])


def test_cosines() -> None:
    a = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [np.nan, 1.0], [3.0, 4.0]])
    e = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [6.0, 8.0]])
    result = cosines(a, e)
    np.testing.assert_allclose(result[[0, 1, 2, 4]], [0.0, 1.0, 0.0, 1.0])
    assert np.isnan(result[3])


def test_a_reload_whose_golden_inputs_drift_fails_and_the_old_version_serves_on(
    golden_bundle: Path,
) -> None:
    """Golden inputs are checked on every load: a reload that drifts is refused like any
    failed reload, the version already loaded answering as before."""
    with TestClient(create_app(make_settings(golden_bundle))) as client:
        wait_ready(client)
        name = client.get("/v1/models").json()["models"][0]["name"]
        files = classify_files(encode_image(photo(40, 40)), "a small cat")
        before = client.post("/classify", files=files)
        _tamper(golden_bundle, "texts", 0)
        failed = client.post(f"/v1/models/{name}/reload")
        after = client.post("/classify", files=files)
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "reload_failed"
    assert "golden.texts.0" in error["message"]
    assert after.status_code == 200
    assert after.json()["predictions"] == before.json()["predictions"]
