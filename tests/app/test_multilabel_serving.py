"""A multilabel bundle served end to end on a tiny real model: the probabilities are each
label's sigmoid of the head's logits over the temperature, the predicted labels are those at or
above their thresholds, most probable first, and REST (/classify, /classify/batch, top_k,
explain, one modality), the Open Inference Protocol over HTTP and gRPC, and the metrics all
say the same."""

from __future__ import annotations

import base64
import collections
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import InferenceServerClient

from app.bundle.manifest import Manifest
from app.core.classification import predicted_indices
from app.core.engine import build_engine
from app.main import create_app
from tests.support.app_setup import answered, classify_files, make_settings, wait_ready
from tests.support.grpc_requests import triton_inputs
from tests.support.images import encode_image, photo
from tests.support.live_server import serving
from tests.support.server_process import free_port
from tests.support.tiny_bundle import (
    TAG_THRESHOLDS,
    TAGS,
    TinyHead,
    make_tiny_multilabel_bundle,
)

NAME = "tiny-multilabel-bundle"
TEMPERATURE = 1.7
IMAGES = [encode_image(photo(60 + 9 * i, 48 + 5 * i, seed=i)) for i in range(4)]
TEXTS = ["a small cat", "the big blue dog photo", "a red bird", "photo of a big red dog"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyHead]:
    root = tmp_path_factory.mktemp("multilabel")
    head = make_tiny_multilabel_bundle(root, temperature=TEMPERATURE)
    return root, head


@pytest.fixture(scope="module")
def expected(bundle: tuple[Path, TinyHead]) -> np.ndarray:
    """Each test item's probabilities, computed from the tiny head's own parameters: the
    encoders' features through ``TinyHead.logits``, then a sigmoid of logits / T."""
    engine = build_engine(make_settings(bundle[0]))
    pipeline = engine.pipeline
    items = [engine.prepare(image, text) for image, text in zip(IMAGES, TEXTS, strict=True)]
    image = pipeline.encode_images(np.stack([i.pixels for i in items if i.pixels is not None]))
    text = pipeline.encode_texts([i.token_ids for i in items if i.token_ids is not None])
    logits = bundle[1].logits(image, text).astype(np.float64)
    probabilities: np.ndarray = 1.0 / (1.0 + np.exp(-logits / TEMPERATURE))
    return probabilities


@pytest.fixture(scope="module")
def client(bundle: tuple[Path, TinyHead]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(bundle[0]))) as test_client:
        wait_ready(test_client)
        yield test_client


def _manifest(root: Path) -> Manifest:
    return Manifest.model_validate_json((root / "manifest.json").read_text(encoding="utf-8"))


def _decided(probabilities: np.ndarray) -> list[str]:
    """The predicted labels, computed here: at or above the threshold, most probable first."""
    chosen = [i for i, p in enumerate(probabilities) if p >= TAG_THRESHOLDS[i]]
    return [TAGS[i] for i in sorted(chosen, key=lambda i: (-probabilities[i], i))]


def test_the_thresholds_decide_and_every_label_may_be_left_out(
    bundle: tuple[Path, TinyHead],
) -> None:
    manifest = _manifest(bundle[0])
    probabilities = np.array([0.5, 0.39, 0.95, 0.55], dtype=np.float32)
    # 0.5 >= 0.5 and 0.55 >= 0.55 (at the threshold counts), 0.39 < 0.4, most probable first.
    assert predicted_indices(probabilities, manifest) == [2, 3, 0]
    assert predicted_indices(np.full(4, 0.01, dtype=np.float32), manifest) == []


def test_classify_gives_sigmoids_and_the_labels_over_their_thresholds(
    client: TestClient, expected: np.ndarray
) -> None:
    sets = []
    for i, (image, text) in enumerate(zip(IMAGES, TEXTS, strict=True)):
        body = answered(client.post("/classify", files=classify_files(image, text)))
        by_label = {p["label"]: p["probability"] for p in body["predictions"]}
        np.testing.assert_allclose([by_label[t] for t in TAGS], expected[i], rtol=1e-5)
        assert [p["threshold"] for p in body["predictions"]] == [
            TAG_THRESHOLDS[TAGS.index(p["label"])] for p in body["predictions"]
        ]
        assert body["task"] == "multilabel"
        assert body["labels"] == _decided(expected[i])
        assert body["label"] == TAGS[int(np.argmax(expected[i]))]
        sets.append(tuple(body["labels"]))
    # Probabilities are per label: they need not sum to 1 (these do not).
    assert not np.allclose(expected.sum(axis=1), 1.0)
    assert len(set(sets)) > 1


def test_top_k_cuts_the_ranking_not_the_decision(client: TestClient, expected: np.ndarray) -> None:
    body = answered(
        client.post("/classify", files=classify_files(IMAGES[0], TEXTS[0]), data={"top_k": "1"})
    )
    assert len(body["predictions"]) == 1
    assert body["labels"] == _decided(expected[0])


def test_batch_answers_each_item(client: TestClient, expected: np.ndarray) -> None:
    files = [("images", (f"{i}.png", image, "image/png")) for i, image in enumerate(IMAGES)]
    data = {"texts": TEXTS}
    body = answered(client.post("/classify/batch", files=files, data=data))
    assert [r["result"]["labels"] for r in body["results"]] == [_decided(p) for p in expected]


def test_explain_works_per_label(client: TestClient, expected: np.ndarray) -> None:
    body = answered(
        client.post(
            "/classify", files=classify_files(IMAGES[3], TEXTS[3]), data={"explain": "true"}
        )
    )
    explanation = body["explanation"]
    explained = [c["label"] for c in explanation["top"]]
    # Every predicted label is explained, and at least three labels.
    assert set(body["labels"]) <= set(explained)
    assert len(explained) == max(3, len(body["labels"]))
    text_only = answered(client.post("/classify", files=classify_files(None, TEXTS[3])))
    image_only = answered(client.post("/classify", files=classify_files(IMAGES[3], None)))
    alone = {
        "without_image": {p["label"]: p["probability"] for p in text_only["predictions"]},
        "without_text": {p["label"]: p["probability"] for p in image_only["predictions"]},
    }
    for contribution in explanation["top"]:
        label = contribution["label"]
        assert contribution["probability"] == pytest.approx(expected[3][TAGS.index(label)])
        for field, probabilities in alone.items():
            assert contribution[field] == pytest.approx(probabilities[label], rel=1e-5)
        assert contribution["image_contribution"] == pytest.approx(
            contribution["probability"] - contribution["without_image"]
        )


def test_a_missing_modality_is_answered_with_its_own_decision(client: TestClient) -> None:
    body = answered(client.post("/classify", files=classify_files(None, TEXTS[1])))
    assert body["missing_modality"] == "image"
    probabilities = np.array([p["probability"] for p in body["predictions"]])
    ranked = [p["label"] for p in body["predictions"]]
    in_order = np.array([probabilities[ranked.index(t)] for t in TAGS])
    assert body["labels"] == _decided(in_order)


def test_oip_http_gives_probabilities_and_the_predicted_labels(
    client: TestClient, expected: np.ndarray
) -> None:
    metadata = client.get(f"/v2/models/{NAME}").json()
    assert metadata["parameters"]["task"] == "multilabel"
    assert metadata["parameters"]["thresholds"] == TAG_THRESHOLDS
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label", "labels"]
    request = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(IMAGES)],
                "data": [base64.b64encode(image).decode() for image in IMAGES],
            },
            {"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS},
        ]
    }
    body = answered(client.post(f"/v2/models/{NAME}/infer", json=request))
    outputs = {o["name"]: o for o in body["outputs"]}
    rows = np.array(outputs["probabilities"]["data"]).reshape(len(IMAGES), len(TAGS))
    np.testing.assert_allclose(rows, expected, rtol=1e-5)
    assert outputs["labels"]["data"] == ["|".join(_decided(p)) for p in expected]


def test_oip_grpc_gives_the_same(bundle: tuple[Path, TinyHead], expected: np.ndarray) -> None:
    port = free_port()
    inputs = triton_inputs(IMAGES, TEXTS)
    app = create_app(make_settings(bundle[0], grpc_port=port))
    with serving(app), InferenceServerClient(f"127.0.0.1:{port}") as grpc_client:
        result = grpc_client.infer(NAME, inputs)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5)
    labels = [value.decode() for value in result.as_numpy("labels")]
    assert labels == ["|".join(_decided(p)) for p in expected]


def test_metrics_count_each_predicted_label_and_the_unlabelled(
    tmp_path: Path, expected: np.ndarray
) -> None:
    root = tmp_path / "bundle"
    # The first item's top label alone reaches its threshold; every label is out of reach for
    # the others unless it is theirs too.
    top = int(np.argmax(expected[0]))
    thresholds = [0.999] * len(TAGS)
    thresholds[top] = float(expected[0][top]) - 1e-4
    make_tiny_multilabel_bundle(root, temperature=TEMPERATURE, thresholds=thresholds)
    with TestClient(create_app(make_settings(root))) as test_client:
        wait_ready(test_client)
        answers = [
            answered(test_client.post("/classify", files=classify_files(image, text)))
            for image, text in zip(IMAGES, TEXTS, strict=True)
        ]
        text = test_client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    counted = {
        dict(labels)["label"]: value
        for (name, labels), value in samples.items()
        if name == "fusionserve_predictions_total"
    }
    given: collections.Counter[str] = collections.Counter(
        label for answer in answers for label in answer["labels"]
    )
    assert given[TAGS[top]] >= 1
    assert counted == dict(given)
    unlabelled = sum(1 for answer in answers if not answer["labels"])
    assert unlabelled >= 1
    key = ("fusionserve_unlabelled_items_total", (("bundle", NAME),))
    assert samples[key] == unlabelled


def test_info_and_model_list_say_the_task_and_thresholds(client: TestClient) -> None:
    info = answered(client.get("/info"))
    assert (info["task"], info["fusion_head"]["thresholds"]) == ("multilabel", TAG_THRESHOLDS)
    (model,) = answered(client.get("/v1/models"))["models"]
    assert (model["task"], model["thresholds"], model["labels"]) == (
        "multilabel",
        TAG_THRESHOLDS,
        TAGS,
    )
