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
from app.config.settings import Settings
from app.main import create_app
from app.preprocess.image import ImageDecoder
from models.export.reference_preprocess import reference_image_tensor
from tests.support.app_setup import answered, classify_files, wait_ready
from tests.support.repo_paths import SAMPLES

pytestmark = pytest.mark.e2e

PALACE, DAISY = 698, 985


@pytest.fixture(scope="module")
def client(default_bundle: Path) -> Iterator[TestClient]:
    settings = Settings(bundle_path=default_bundle, device="cpu", exit_on_startup_failure=False)
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client, timeout_s=120)
        yield test_client


def _classify(client: TestClient, image: bytes | None, text: str | None) -> dict[str, Any]:
    return answered(client.post("/classify", files=classify_files(image, text)))


def _direct_probabilities(bundle_dir: Path, image: bytes | None, text: str | None) -> np.ndarray:
    """The bundle's ONNX files run by hand: reference preprocessing, raw tokenizer, the head
    with its presence flags (zeros for a missing modality), softmax at the manifest's
    temperature."""
    manifest = load_bundle(bundle_dir).manifest
    head = manifest.fusion_head
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1

    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(
            str(bundle_dir / name), options, providers=["CPUExecutionProvider"]
        )

    image_features = np.zeros((1, manifest.image_encoder.embedding_dim), dtype=np.float32)
    if image is not None:
        pixels = reference_image_tensor(image, manifest.image_encoder.preprocess)[None]
        (image_features,) = session(manifest.image_encoder.file).run(
            ["features"], {"pixel_values": pixels}
        )
    text_features = np.zeros((1, manifest.text_encoder.embedding_dim), dtype=np.float32)
    if text is not None:
        tokenizer = Tokenizer.from_file(str(bundle_dir / manifest.text_encoder.tokenizer.file))
        tokenizer.enable_truncation(manifest.text_encoder.max_length)
        encoding = tokenizer.encode(text)
        feed = {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
        }
        (text_features,) = session(manifest.text_encoder.file).run(["sentence_embedding"], feed)
    assert head.image_present is not None
    assert head.text_present is not None
    (logits,) = session(head.file).run(
        [head.output],
        {
            head.image_input: image_features,
            head.text_input: text_features,
            head.image_present: np.array([[float(image is not None)]], dtype=np.float32),
            head.text_present: np.array([[float(text is not None)]], dtype=np.float32),
        },
    )
    scaled = logits[0] / head.temperature
    exp = np.exp(scaled - scaled.max())
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


def test_one_modality_alone(
    client: TestClient, default_bundle: Path, samples: list[dict[str, Any]]
) -> None:
    labels = load_bundle(default_bundle).manifest.labels
    sample = samples[0]
    image, text = (SAMPLES / sample["file"]).read_bytes(), sample["text"]
    fused = _classify(client, image, text)
    for sent_image, sent_text, missing in ((image, None, "text"), (None, text, "image")):
        body = _classify(client, sent_image, sent_text)
        assert body["missing_modality"] == missing
        got = {p["label"]: p["probability"] for p in body["predictions"]}
        expected = _direct_probabilities(default_bundle, sent_image, sent_text)
        np.testing.assert_allclose([got[label] for label in labels], expected, atol=1e-5)
        assert got != {p["label"]: p["probability"] for p in fused["predictions"]}
    # A sample's image alone still gets its label (the samples are clear, confident cases).
    assert _classify(client, image, None)["label"] == sample["label"]


def test_explanation_equals_the_single_modality_requests(
    client: TestClient, samples: list[dict[str, Any]]
) -> None:
    sample = samples[1]
    image, text = (SAMPLES / sample["file"]).read_bytes(), sample["text"]
    form = {"text": (None, text), "explain": (None, "1")}
    response = client.post("/classify", files={"image": ("item.png", image, "image/png"), **form})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == _classify(client, image, text)["predictions"]
    explanation = body["explanation"]
    assert explanation["predicted"]["label"] == body["label"] == sample["label"]
    without = {"image": _classify(client, None, text), "text": _classify(client, image, None)}
    for explained in explanation["top"]:
        for modality, alone in without.items():
            got = {p["label"]: p["probability"] for p in alone["predictions"]}
            assert explained[f"without_{modality}"] == got[explained["label"]]
            assert explained[f"{modality}_contribution"] == pytest.approx(
                explained["probability"] - got[explained["label"]]
            )


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


def test_model_card_is_the_evaluation_of_the_shipped_head(default_bundle: Path) -> None:
    evaluation = json.loads((default_bundle / "evaluation.json").read_text())
    training = json.loads((default_bundle / "training_report.json").read_text())
    manifest = load_bundle(default_bundle).manifest
    # The shipped head is the one trained and evaluated, at the trained temperature.
    assert manifest.fusion_head.sha256 == evaluation["bundle"]["head_sha256"]
    assert manifest.fusion_head.sha256 == training["fusion_head"]["sha256"]
    assert manifest.fusion_head.temperature == training["temperature"]["value"]
    assert evaluation["calibration"]["after"]["temperature"] == manifest.fusion_head.temperature
    assert evaluation["dataset"]["split"] == "test"
    assert evaluation["dataset"]["examples"] == 10000
    rows = {row["input"]: row for row in evaluation["ablation"]}
    # The targets, as measured by `fusionserve evaluate` on the held-out test split.
    assert rows["fused"]["accuracy"] >= rows["image_only"]["accuracy"] + 0.03
    assert rows["fused"]["accuracy"] > rows["text_only"]["accuracy"]
    assert evaluation["calibration"]["after"]["ece"] <= 0.03
    card = (default_bundle / "model_card.md").read_text()
    for row in rows.values():
        assert f"{row['accuracy']:.4f}" in card
    assert f"{evaluation['calibration']['after']['ece']:.4f}" in card
    for figure in ("confusion_matrix.png", "reliability_diagram.png"):
        assert f"]({figure})" in card
        with Image.open(default_bundle / figure) as image:
            assert image.size[0] > 300


def test_a_version_1_manifest_is_written_without_version_2_fields(default_bundle: Path) -> None:
    """The recipe writes schema version 1, so its preprocessing names version 1 fields only
    (a reader of version 1 knows no others)."""
    raw = json.loads((default_bundle / "manifest.json").read_text())
    manifest = load_bundle(default_bundle).manifest
    assert raw["schema_version"] == 1
    written = set(raw["image_encoder"]["preprocess"]) | set(raw["text_encoder"])
    version_2 = {
        "resize", "crop_pct", "resize_height", "resize_width", "long_side_rounding",
        "crop_offset_rounding", "rescale_factor", "padding", "pad_token_id", "prompt",
    }  # fmt: skip
    assert not written & version_2
    assert manifest.image_encoder.preprocess.output_size == (224, 224)
