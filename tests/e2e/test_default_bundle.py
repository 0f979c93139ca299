"""End-to-end on the real default bundle (EfficientNet-Lite0 + MiniLM-L6 + trained head)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sklearn.datasets import load_sample_image
from tokenizers import Tokenizer

from app.bundle import load_bundle
from app.main import create_app
from app.preprocess.image import ImageDecoder
from app.settings import Settings
from models.reference import reference_image_tensor
from tests.conftest import wait_ready
from tests.e2e.conftest import SAMPLES

pytestmark = pytest.mark.e2e

PALACE, DAISY = 698, 985


@pytest.fixture(scope="module")
def client(default_bundle: Path) -> Iterator[TestClient]:
    settings = Settings(bundle_path=default_bundle, device="cpu", exit_on_startup_failure=False)
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client, timeout_s=120)
        yield test_client


def _classify(client: TestClient, image: bytes, text: str) -> dict[str, Any]:
    response = client.post(
        "/classify", files={"image": ("item.png", image, "image/png")}, data={"text": text}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _direct_probabilities(bundle_dir: Path, image: bytes, text: str) -> np.ndarray:
    """The bundle's ONNX files run by hand: reference preprocessing, raw tokenizer, softmax."""
    manifest = load_bundle(bundle_dir).manifest
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1

    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(
            str(bundle_dir / name), options, providers=["CPUExecutionProvider"]
        )

    pixels = reference_image_tensor(image, manifest.image_encoder.preprocess)[None]
    (image_features,) = session(manifest.image_encoder.file).run(
        ["features"], {"pixel_values": pixels}
    )
    tokenizer = Tokenizer.from_file(str(bundle_dir / manifest.text_encoder.tokenizer.file))
    tokenizer.enable_truncation(manifest.text_encoder.max_length)
    encoding = tokenizer.encode(text)
    feed = {
        "input_ids": np.array([encoding.ids], dtype=np.int64),
        "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
    }
    (text_features,) = session(manifest.text_encoder.file).run(["sentence_embedding"], feed)
    (logits,) = session(manifest.fusion_head.file).run(
        ["logits"], {"image_features": image_features, "text_features": text_features}
    )
    exp = np.exp(logits[0] - logits[0].max())
    return np.asarray(exp / exp.sum())


def test_samples_get_their_label(client: TestClient, samples: list[dict[str, Any]]) -> None:
    for sample in samples:
        body = _classify(client, (SAMPLES / sample["file"]).read_bytes(), sample["text"])
        assert body["label"] == sample["label"], (sample, body["predictions"][:3])
        assert body["bundle"]["name"] == "fashion-mnist-effnet-minilm"
        assert len(body["predictions"]) == 10


def test_http_equals_direct_onnx(
    client: TestClient, default_bundle: Path, samples: list[dict[str, Any]]
) -> None:
    labels = load_bundle(default_bundle).manifest.labels
    photo = io.BytesIO()
    Image.fromarray(load_sample_image("flower.jpg")).save(photo, format="PNG")
    cases = [((SAMPLES / s["file"]).read_bytes(), s["text"]) for s in samples[:3]]
    cases.append((photo.getvalue(), "a pair of leather ankle boots with a low heel"))
    for image, text in cases:
        body = _classify(client, image, text)
        got = {p["label"]: p["probability"] for p in body["predictions"]}
        expected = _direct_probabilities(default_bundle, image, text)
        np.testing.assert_allclose([got[label] for label in labels], expected, atol=1e-5)


@pytest.mark.parametrize(("name", "index"), [("china.jpg", PALACE), ("flower.jpg", DAISY)])
def test_imagenet_head_sees_real_photos(default_bundle: Path, name: str, index: int) -> None:
    # The service's own decoder, straight from JPEG bytes, feeds the encoder's ImageNet output.
    manifest = load_bundle(default_bundle).manifest
    buffer = io.BytesIO()
    Image.fromarray(load_sample_image(name)).save(buffer, format="JPEG", quality=95)
    decoder = ImageDecoder(manifest.image_encoder.preprocess, max_pixels=10**8)
    pixels = decoder(buffer.getvalue())[None]
    session = ort.InferenceSession(
        str(default_bundle / manifest.image_encoder.file), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(["imagenet_logits"], {"pixel_values": pixels})
    assert int(np.argmax(logits[0])) == index


def test_model_card_fused_beats_each_modality(default_bundle: Path) -> None:
    report = json.loads((default_bundle / "training_report.json").read_text())
    test = {name: head["metrics"]["test"] for name, head in report["heads"].items()}
    assert report["data"]["sizes"]["test"] == 10000
    for metric in ("accuracy", "macro_f1"):
        assert test["fused"][metric] > test["image_only"][metric], metric
        assert test["fused"][metric] > test["text_only"][metric], metric
    # The shipped head is the one the report describes, and the card quotes the report.
    manifest = load_bundle(default_bundle).manifest
    assert manifest.fusion_head.sha256 == report["fusion_head"]["sha256"]
    card = (default_bundle / "model_card.md").read_text()
    assert f"{test['fused']['accuracy']:.4f}" in card
    assert f"{test['image_only']['accuracy']:.4f}" in card
