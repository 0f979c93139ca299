from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config.settings import Settings
from app.core.engine import Engine, build_engine
from app.main import create_app
from models.export.reference_preprocess import reference_image_tensor
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS

PNG = encode_image(photo(80, 60), "PNG")


def _post(client: TestClient, image: bytes = PNG, text: str = "a small cat", **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/classify", files={"image": ("item.png", image, "image/png")}, data={"text": text} | form
    )


def _assert_error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_classify_returns_sorted_probabilities(client: TestClient) -> None:
    response = _post(client)
    assert response.status_code == 200, response.text
    body = response.json()
    probabilities = [p["probability"] for p in body["predictions"]]
    assert sorted(probabilities, reverse=True) == probabilities
    assert {p["label"] for p in body["predictions"]} == set(LABELS)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert body["label"] == body["predictions"][0]["label"]
    assert body["probability"] == probabilities[0]
    assert body["bundle"] == {"name": "tiny-test-bundle", "version": "0.0.1"}
    timing = body["timing"]
    assert timing["total_ms"] >= timing["inference_ms"] > 0


def test_classify_matches_direct_onnx_run(client: TestClient, settings: Settings) -> None:
    engine = build_engine(settings)
    spec = engine.bundle.manifest.image_encoder.preprocess
    pixels = reference_image_tensor(PNG, spec)[None]
    ids = engine.pipeline.tokenizer.encode("a small cat")
    image_features = engine.pipeline.encode_images(pixels)
    text_features = engine.pipeline.encode_texts([ids])
    expected = engine.pipeline.fuse(image_features, text_features)[0]
    body = _post(client).json()
    got = {p["label"]: p["probability"] for p in body["predictions"]}
    np.testing.assert_allclose([got[label] for label in LABELS], expected, atol=1e-6)


def test_text_changes_the_prediction_input(client: TestClient) -> None:
    first = _post(client, text="a small cat").json()["predictions"]
    second = _post(client, text="the big blue dog").json()["predictions"]
    assert first != second


def test_top_k(client: TestClient) -> None:
    body = _post(client, top_k="2").json()
    assert len(body["predictions"]) == 2
    full = _post(client).json()
    assert body["predictions"] == full["predictions"][:2]
    _assert_error(_post(client, top_k="0"), 422, "invalid_request")
    _assert_error(_post(client, top_k="many"), 422, "invalid_request")


def test_missing_fields(client: TestClient) -> None:
    # The tiny bundle's head has no presence inputs: it cannot answer without a modality.
    response = client.post("/classify", files={"text": (None, "a cat")})
    _assert_error(response, 422, "modality_required")
    assert "needs the image" in response.json()["error"]["message"]
    response = client.post("/classify", files={"image": ("a.png", PNG, "image/png")})
    _assert_error(response, 422, "modality_required")
    assert "needs the text" in response.json()["error"]["message"]
    response = client.post("/classify", files={"top_k": (None, "2")})
    _assert_error(response, 422, "invalid_request")
    assert "an image, a text, or both" in response.json()["error"]["message"]
    # No body at all is not multipart/form-data.
    _assert_error(client.post("/classify"), 415, "unsupported_media_type")


def test_image_sent_as_plain_field(client: TestClient) -> None:
    response = client.post(
        "/classify", files={"image": (None, "not a file"), "text": (None, "a cat")}
    )
    _assert_error(response, 422, "invalid_request")
    assert "not a file" not in response.text


def test_undecodable_images(client: TestClient) -> None:
    _assert_error(_post(client, image=b"GIF89a but not really"), 422, "invalid_image")
    _assert_error(_post(client, image=b"hello world"), 415, "unsupported_image_format")
    _assert_error(_post(client, image=b""), 422, "invalid_image")
    _assert_error(_post(client, image=PNG[: len(PNG) // 2]), 422, "invalid_image")
    _assert_error(_post(client, image=encode_image(photo(2, 2))), 422, "invalid_image")
    # The service still answers correctly afterwards.
    assert _post(client).status_code == 200


def test_invalid_text_is_not_echoed(client: TestClient) -> None:
    response = _post(client, text="secret\x00payload")
    _assert_error(response, 422, "invalid_text")
    assert "secret" not in response.text
    _assert_error(_post(client, text="   "), 422, "invalid_text")


def test_limits_are_settings(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, max_image_bytes=100, max_text_chars=5)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        _assert_error(_post(client), 413, "payload_too_large")
        _assert_error(_post(client, image=PNG[:50], text="far too long"), 422, "invalid_text")


def test_unknown_route_and_method(client: TestClient) -> None:
    _assert_error(client.get("/nope"), 404, "not_found")
    _assert_error(client.get("/classify"), 405, "method_not_allowed")


def test_health_and_info(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["device"] == "cpu"
    assert body["providers"]["image_encoder"] == ["CPUExecutionProvider"]
    info = client.get("/info").json()
    assert info["bundle"]["name"] == "tiny-test-bundle"
    assert info["labels"] == LABELS
    assert info["image_preprocess"]["crop_size"] == 32
    assert info["settings"]["device"] == "cpu"


def test_auto_device_fallback_is_reported(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, device="auto")
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        body = client.get("/readyz").json()
    if body["device"] == "cpu":
        assert "CUDA is not available" in body["detail"]


def test_not_ready_until_loaded_and_warmed(settings: Settings) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_factory(s: Settings) -> Engine:
        entered.set()
        assert release.wait(10), "test never released the loader"
        return build_engine(s)

    with TestClient(create_app(settings, engine_factory=slow_factory)) as client:
        assert entered.wait(10)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "loading"
        assert client.get("/livez").status_code == 200
        _assert_error(_post(client), 503, "not_ready")
        _assert_error(client.get("/info"), 503, "not_ready")
        release.set()
        wait_ready(client)
        assert _post(client).status_code == 200


def test_failed_load_is_not_ready_and_not_live(tiny_bundle: Path) -> None:
    (tiny_bundle / "head.onnx").write_bytes(b"corrupted")
    settings = make_settings(tiny_bundle)
    with TestClient(create_app(settings)) as client:
        for _ in range(500):
            if client.get("/readyz").json()["status"] == "failed":
                break
            threading.Event().wait(0.01)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "fusion_head.sha256" in ready.json()["detail"]
        assert client.get("/livez").status_code == 503
        _assert_error(_post(client), 503, "not_ready")


def test_openapi_documents_errors(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/classify", "/classify/batch"):
        responses = schema["paths"][path]["post"]["responses"]
        assert set(responses) == {
            *("200", "400", "404", "413", "415", "422", "429", "500", "503", "504")
        }
        assert "ErrorResponse" in str(responses["415"])
    form = schema["paths"]["/classify"]["post"]["requestBody"]["content"]
    assert set(form) == {"multipart/form-data"}
    assert client.get("/docs").status_code == 200


def test_info_reports_batches_and_text_cache(client: TestClient, settings: Settings) -> None:
    before = client.get("/info").json()["stats"]
    assert _post(client, text="a blue bird").status_code == 200
    assert _post(client, text="  a blue bird ").status_code == 200  # same after normalising
    after = client.get("/info").json()["stats"]
    assert after["items"] == before["items"] + 2
    assert after["text_cache"]["hits"] == before["text_cache"]["hits"] + 1
    assert after["text_cache"]["misses"] == before["text_cache"]["misses"] + 1
    assert after["queue_depth"] == 0
    assert after["in_flight"] == 0
    assert after["item_ms"] > 0  # the warm-up's seed at least: admission has a pace
    shown = client.get("/info").json()["settings"]
    assert shown["max_queue_wait_s"] == settings.max_queue_wait_s
    assert shown["max_in_flight"] == settings.max_in_flight
    assert shown["inline_decode_max_pixels"] == settings.inline_decode_max_pixels
    assert shown["inline_batch_max_ms"] == settings.inline_batch_max_ms
    assert isinstance(after["batches_inline"], bool)  # which: tests/app/core/test_inline_batches


def _batch_files(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"{i}.png", image, "image/png")) for i, image in enumerate(images)]


def test_classify_batch_matches_single_requests(client: TestClient) -> None:
    images = [encode_image(photo(70 + i, 60, seed=i)) for i in range(3)]
    texts = ["a cat", "the big dog", "a red bird"]
    response = client.post(
        "/classify/batch", files=_batch_files(images), data={"texts": texts, "top_k": "2"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    for image, text, item in zip(images, texts, results, strict=True):
        single = _post(client, image=image, text=text, top_k="2").json()
        assert item["error"] is None
        assert item["result"]["label"] == single["label"]
        assert len(item["result"]["predictions"]) == 2
        for a, b in zip(item["result"]["predictions"], single["predictions"], strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-5)


def test_classify_batch_isolates_bad_items(client: TestClient) -> None:
    images = [PNG, b"not an image", PNG]
    texts = ["a cat", "a dog", "bad\x00text"]
    response = client.post("/classify/batch", files=_batch_files(images), data={"texts": texts})
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0]["result"]["label"] in LABELS
    assert results[1]["result"] is None
    assert results[1]["error"]["code"] == "unsupported_image_format"
    assert results[2]["error"]["code"] == "invalid_text"


def test_classify_batch_request_errors(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, max_items_per_request=2)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        mismatched = client.post(
            "/classify/batch", files=_batch_files([PNG, PNG]), data={"texts": ["only one"]}
        )
        _assert_error(mismatched, 422, "invalid_request")
        too_many = client.post(
            "/classify/batch", files=_batch_files([PNG] * 3), data={"texts": ["a", "b", "c"]}
        )
        _assert_error(too_many, 413, "too_many_items")
        no_images = client.post("/classify/batch", files={"texts": (None, "a")})
        _assert_error(no_images, 422, "invalid_request")
