"""Missing modalities and temperature: pipeline, signature checks and the HTTP API.

The tiny head with presence inputs swaps a missing modality's features for a fixed null
embedding; ``TinyHead.logits`` computes the same in numpy, so every answer has an exact
expected value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.bundle.manifest import FusionHead
from app.core.engine import Engine, build_engine
from app.core.pipeline import softmax
from app.errors import BundleError, InvalidRequest, ModalityRequired
from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS, TinyHead, make_tiny_bundle_with_head

PNG = encode_image(photo(80, 60), "PNG")
TEXT = "a small red cat"


@pytest.fixture(scope="module")
def optional_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyHead]:
    root = tmp_path_factory.mktemp("optional")
    return root, make_tiny_bundle_with_head(root, presence=True, temperature=2.0)


@pytest.fixture(scope="module")
def engine(optional_bundle: tuple[Path, TinyHead]) -> Engine:
    return build_engine(make_settings(optional_bundle[0]))


def _features(engine: Engine) -> tuple[np.ndarray, np.ndarray]:
    pipeline = engine.pipeline
    item = pipeline.prepare(PNG, TEXT)
    assert item.pixels is not None
    assert item.token_ids is not None
    image = pipeline.encode_images(item.pixels[None])
    text = pipeline.encode_texts([item.token_ids])
    return image, text


def test_missing_modality_uses_the_heads_null_embedding(
    engine: Engine, optional_bundle: tuple[Path, TinyHead]
) -> None:
    head = optional_bundle[1]
    pipeline = engine.pipeline
    image, text = _features(engine)
    cases = {
        "image only": (pipeline.prepare(PNG, None), [True], [False]),
        "text only": (pipeline.prepare(None, TEXT), [False], [True]),
        "both": (pipeline.prepare(PNG, TEXT), [True], [True]),
    }
    answers = {}
    for name, (item, image_present, text_present) in cases.items():
        logits = head.logits(image, text, np.array(image_present), np.array(text_present))
        got = pipeline.run([item])[0]
        np.testing.assert_allclose(got, softmax(logits, 2.0)[0], rtol=1e-5, err_msg=name)
        answers[name] = got
    # The three answers really differ: the missing modality is not silently zeros or ignored.
    assert not np.allclose(answers["image only"], answers["both"])
    assert not np.allclose(answers["text only"], answers["both"])
    assert cases["image only"][0].missing == "text"
    assert cases["text only"][0].missing == "image"
    assert cases["both"][0].missing is None


def test_mixed_batch_equals_items_run_alone(engine: Engine) -> None:
    pipeline = engine.pipeline
    items = [
        pipeline.prepare(None, TEXT),
        pipeline.prepare(PNG, TEXT),
        pipeline.prepare(PNG, None),
        pipeline.prepare(None, "the big blue dog"),
    ]
    together = pipeline.run(items)
    alone = np.concatenate([pipeline.run([item]) for item in items])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-7)
    # A batch with no image at all, or no text at all, never calls that encoder with nothing.
    assert pipeline.run([items[0], items[3]]).shape == (2, len(LABELS))
    assert pipeline.run([items[2]]).shape == (1, len(LABELS))


def test_temperature_scales_the_logits(engine: Engine) -> None:
    pipeline = engine.pipeline
    image, text = _features(engine)
    logits = pipeline.head_scores(image, text)
    probabilities = pipeline.probabilities(logits)
    np.testing.assert_allclose(probabilities, softmax(logits / 2.0), rtol=1e-6)
    # T = 2 flattens: the top class is the same, with a lower probability than at T = 1.
    assert probabilities.argmax() == softmax(logits).argmax()
    assert probabilities.max() < softmax(logits).max()


def test_head_without_presence_inputs_needs_both(tiny_bundle_dir: Path) -> None:
    engine = build_engine(make_settings(tiny_bundle_dir))
    pipeline = engine.pipeline
    assert not pipeline.accepts_missing("image")
    assert not pipeline.accepts_missing("text")
    with pytest.raises(ModalityRequired, match="needs the image"):
        engine.prepare(None, TEXT)
    with pytest.raises(ModalityRequired, match="needs the text"):
        engine.prepare(PNG, None)
    image, text = _features(build_engine(make_settings(tiny_bundle_dir)))
    with pytest.raises(ModalityRequired):
        pipeline.head_scores(image, text, np.array([False]), None)


def test_neither_modality_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match="an image, a text, or both"):
        engine.prepare(None, None)


def _head_spec(**fields: object) -> FusionHead:
    base: dict[str, object] = {
        "file": "head.onnx",
        "sha256": "0" * 64,
        "image_input": "image_features",
        "text_input": "text_features",
        "output": "logits",
    }
    return FusionHead.model_validate(base | fields)


def test_manifest_rules_for_presence_and_temperature() -> None:
    spec = _head_spec(image_present="image_present", temperature=1.5)
    assert spec.accepts_missing("image")
    assert not spec.accepts_missing("text")
    for bad in (
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"temperature": float("nan")},
        {"temperature": 2.0, "output_type": "probabilities"},
        {"image_present": "text_features"},
        {"image_present": "p", "text_present": "p"},
    ):
        with pytest.raises(ValueError, match="fusion|temperature|must differ|greater|finite"):
            _head_spec(**bad)


def _rewrite(root: Path, **head_fields: object) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in head_fields.items():
        if value is None:
            manifest["fusion_head"].pop(key, None)
        else:
            manifest["fusion_head"][key] = value
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # The graph has presence inputs the manifest does not name.
        ({"image_present": None}, "does not name: \\['image_present'\\]"),
        # The manifest names a presence input the graph does not have.
        ({"text_present": "text_mask"}, "'text_mask' not in the graph"),
        # A presence input that is really a feature input has the wrong width.
        ({"image_present": "image_features"}, "must differ"),
    ],
)
def test_presence_inputs_are_checked_at_start_up(
    optional_bundle: tuple[Path, TinyHead], tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    import shutil

    root = Path(shutil.copytree(optional_bundle[0], tmp_path / "b"))
    _rewrite(root, **fields)
    with pytest.raises(BundleError, match=message):
        build_engine(make_settings(root))


@pytest.fixture
def optional_client(optional_bundle: tuple[Path, TinyHead]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(optional_bundle[0]))) as client:
        wait_ready(client)
        yield client


def test_api_answers_either_modality_alone(optional_client: TestClient, engine: Engine) -> None:
    pipeline = engine.pipeline
    both = optional_client.post(
        "/classify", files={"image": ("a.png", PNG, "image/png"), "text": (None, TEXT)}
    )
    image_only = optional_client.post("/classify", files={"image": ("a.png", PNG, "image/png")})
    text_only = optional_client.post("/classify", files={"text": (None, TEXT)})
    expected = {
        None: (both, pipeline.prepare(PNG, TEXT)),
        "text": (image_only, pipeline.prepare(PNG, None)),
        "image": (text_only, pipeline.prepare(None, TEXT)),
    }
    for missing, (response, item) in expected.items():
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["missing_modality"] == missing
        got = {p["label"]: p["probability"] for p in body["predictions"]}
        want = pipeline.run([item])[0]
        np.testing.assert_allclose([got[label] for label in LABELS], want, rtol=1e-5)
    info = optional_client.get("/info").json()["fusion_head"]
    assert info == {
        "output_type": "logits",
        "thresholds": None,
        "temperature": 2.0,
        "accepts_image_only": True,
        "accepts_text_only": True,
    }


def test_concurrent_mixed_requests_batch_together(optional_client: TestClient) -> None:
    forms = [
        {"image": ("a.png", PNG, "image/png")},
        {"text": (None, TEXT)},
        {"image": ("a.png", PNG, "image/png"), "text": (None, TEXT)},
    ] * 8
    alone = [optional_client.post("/classify", files=form).json() for form in forms[:3]]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda f: optional_client.post("/classify", files=f), forms))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        body, reference = response.json(), alone[i % 3]
        assert body["missing_modality"] == reference["missing_modality"]
        assert body["label"] == reference["label"]
        assert body["probability"] == pytest.approx(reference["probability"], rel=1e-5)
