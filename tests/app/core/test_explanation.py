"""explain=true: each modality's contribution, from the fusion head re-run without it.

The tiny head with presence inputs swaps a missing modality for a fixed null embedding;
``TinyHead.logits`` computes the same in numpy, so every number has an exact expected value.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.encoder_pipeline import Session
from app.core.engine import Engine, build_engine
from app.core.pipeline import softmax
from app.errors import ExplainUnsupported
from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS, TinyHead, make_tiny_bundle_with_head

PNG = encode_image(photo(80, 60), "PNG")
OTHER_PNG = encode_image(photo(64, 64, seed=3), "PNG")
TEXT = "a small red cat"
TEMPERATURE = 2.0


@pytest.fixture(scope="module")
def optional_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyHead]:
    root = tmp_path_factory.mktemp("explain")
    return root, make_tiny_bundle_with_head(root, presence=True, temperature=TEMPERATURE)


@pytest.fixture(scope="module")
def engine(optional_bundle: tuple[Path, TinyHead]) -> Engine:
    return build_engine(make_settings(optional_bundle[0]))


@pytest.fixture(scope="module")
def client(optional_bundle: tuple[Path, TinyHead]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(optional_bundle[0]))) as c:
        wait_ready(c)
        yield c


def _expected(engine: Engine, head: TinyHead, image: bytes, text: str) -> dict[str, np.ndarray]:
    """With both, without the image, without the text: softmax(TinyHead.logits / T)."""
    pipeline = engine.pipeline
    item = pipeline.prepare(image, text)
    assert item.pixels is not None
    assert item.token_ids is not None
    features = pipeline.encode_images(item.pixels[None]), pipeline.encode_texts([item.token_ids])
    yes, no = np.array([True]), np.array([False])
    return {
        "probability": softmax(head.logits(*features, yes, yes), TEMPERATURE)[0],
        "without_image": softmax(head.logits(*features, no, yes), TEMPERATURE)[0],
        "without_text": softmax(head.logits(*features, yes, no), TEMPERATURE)[0],
    }


def _post(client: TestClient, image: bytes | None, text: str | None, **form: str) -> Any:
    files: dict[str, Any] = {name: (None, value) for name, value in form.items()}
    if image is not None:
        files["image"] = ("a.png", image, "image/png")
    if text is not None:
        files["text"] = (None, text)
    return client.post("/classify", files=files)


def _check(explained: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    index = LABELS.index(explained["label"])
    for name, values in want.items():
        assert explained[name] == pytest.approx(float(values[index]), rel=1e-5, abs=1e-7), name
    p = explained["probability"]
    assert explained["image_contribution"] == pytest.approx(p - explained["without_image"])
    assert explained["text_contribution"] == pytest.approx(p - explained["without_text"])


def test_explanation_has_the_exact_numbers(
    client: TestClient, engine: Engine, optional_bundle: tuple[Path, TinyHead]
) -> None:
    want = _expected(engine, optional_bundle[1], PNG, TEXT)
    response = _post(client, PNG, TEXT, explain="true")
    assert response.status_code == 200, response.text
    body = response.json()
    explanation = body["explanation"]
    assert explanation["method"] == "null_embedding_ablation"
    order = np.argsort(-want["probability"], kind="stable")
    # No top_k: the three most probable classes, highest first; the first is the prediction.
    assert [c["label"] for c in explanation["top"]] == [LABELS[i] for i in order[:3]]
    assert explanation["predicted"] == explanation["top"][0]
    assert explanation["predicted"]["label"] == body["label"]
    for explained in explanation["top"]:
        _check(explained, want)
    # The ablations really move the answer: neither modality is ignored.
    predicted = explanation["predicted"]
    assert abs(predicted["image_contribution"]) > 1e-3
    assert abs(predicted["text_contribution"]) > 1e-3
    # The probabilities themselves are those of the request without explain.
    assert body["predictions"] == _post(client, PNG, TEXT).json()["predictions"]


def test_top_k_sets_how_many_classes_are_explained(client: TestClient) -> None:
    body = _post(client, PNG, TEXT, explain="true", top_k="2").json()
    assert [c["label"] for c in body["explanation"]["top"]] == [
        p["label"] for p in body["predictions"]
    ]
    assert len(body["explanation"]["top"]) == 2


def test_without_explain_the_explanation_is_null(client: TestClient) -> None:
    absent = _post(client, PNG, TEXT).json()
    false = _post(client, PNG, TEXT, explain="false").json()
    assert absent["explanation"] is None
    assert false["explanation"] is None
    assert absent["predictions"] == false["predictions"]


def test_explanation_equals_the_single_modality_requests(client: TestClient) -> None:
    explained = _post(client, PNG, TEXT, explain="true").json()["explanation"]["predicted"]
    text_only = _post(client, None, TEXT).json()
    image_only = _post(client, PNG, None).json()
    assert text_only["missing_modality"] == "image"

    def probability(body: dict[str, Any], label: str) -> float:
        return next(p["probability"] for p in body["predictions"] if p["label"] == label)

    assert explained["without_image"] == pytest.approx(
        probability(text_only, explained["label"]), rel=1e-6
    )
    assert explained["without_text"] == pytest.approx(
        probability(image_only, explained["label"]), rel=1e-6
    )


def test_concurrent_mixed_requests_explain_as_alone(client: TestClient) -> None:
    """Explain and plain requests, with single-modality ones, batched together."""
    forms: list[tuple[bytes | None, str | None, dict[str, str]]] = [
        (PNG, TEXT, {"explain": "true"}),
        (PNG, None, {}),
        (OTHER_PNG, "the big blue dog", {"explain": "true"}),
        (None, TEXT, {}),
        (OTHER_PNG, TEXT, {}),
        (PNG, "the big blue dog", {"explain": "true", "top_k": "4"}),
    ]
    alone = [_post(client, *form[:2], **form[2]).json() for form in forms]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda f: _post(client, f[0], f[1], **f[2]), forms * 4))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        body, reference = response.json(), alone[i % len(forms)]
        assert (body["explanation"] is None) == (reference["explanation"] is None)
        for key in ("label", "missing_modality"):
            assert body[key] == reference[key]
        np.testing.assert_allclose(
            [p["probability"] for p in body["predictions"]],
            [p["probability"] for p in reference["predictions"]],
            rtol=1e-5,
        )
        if reference["explanation"] is not None:
            for got, want in zip(
                body["explanation"]["top"], reference["explanation"]["top"], strict=True
            ):
                assert got["label"] == want["label"]
                for name in ("without_image", "without_text"):
                    assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-7)
    stats = client.get("/info").json()["stats"]
    assert max(int(size) for size in stats["batch_sizes"]) > 1, "no batch formed"


def test_batch_route_explains_every_item(client: TestClient) -> None:
    files = [
        ("images", ("a.png", PNG, "image/png")),
        ("images", ("b.png", OTHER_PNG, "image/png")),
        ("texts", (None, TEXT)),
        ("texts", (None, "the big blue dog")),
        ("explain", (None, "true")),
    ]
    response = client.post("/classify/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    pairs = [(PNG, TEXT), (OTHER_PNG, "the big blue dog")]
    for result, (image, text) in zip(results, pairs, strict=True):
        got = result["result"]["explanation"]
        want = _post(client, image, text, explain="true").json()["explanation"]
        assert [c["label"] for c in got["top"]] == [c["label"] for c in want["top"]]
        for got_class, want_class in zip(got["top"], want["top"], strict=True):
            for name in ("probability", "without_image", "without_text"):
                assert got_class[name] == pytest.approx(want_class[name], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(
    ("image", "text"), [(PNG, None), (None, TEXT)], ids=["image only", "text only"]
)
def test_one_modality_cannot_be_explained(
    client: TestClient, image: bytes | None, text: str | None
) -> None:
    response = _post(client, image, text, explain="true")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "explain_unsupported"
    assert "needs both the image and the text" in response.json()["error"]["message"]


def test_plain_head_cannot_explain(tiny_bundle_dir: Path) -> None:
    with pytest.raises(ExplainUnsupported, match="cannot leave"):
        build_engine(make_settings(tiny_bundle_dir)).prepare(PNG, TEXT, explain=True)
    with TestClient(create_app(make_settings(tiny_bundle_dir))) as client:
        wait_ready(client)
        response = _post(client, PNG, TEXT, explain="true")
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "explain_unsupported"
        assert _post(client, PNG, TEXT).status_code == 200


def test_explain_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert "explanation" in components["ClassifyResponse"]["properties"]
    assert "image_contribution" in components["ClassContribution"]["properties"]
    for path in ("/classify", "/classify/batch"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        explain = body["schema"]["properties"]["explain"]
        assert (explain["type"], explain["default"]) == ("boolean", False)
        assert "`explanation`" in explain["description"]


@dataclass
class Counting:
    """A session wrapper that records the batch size of every call."""

    session: Session
    calls: list[int] = field(default_factory=list)

    def run(
        self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]
    ) -> list[np.ndarray]:
        self.calls.append(len(next(iter(input_feed.values()))))
        return self.session.run(output_names, input_feed)


def test_one_extra_head_call_per_batch_and_no_encoder_rerun(
    optional_bundle: tuple[Path, TinyHead],
) -> None:
    pipeline = build_engine(make_settings(optional_bundle[0], text_cache_size=0)).pipeline
    counters = {name: Counting(getattr(pipeline, name)) for name in ("_head", "_image", "_text")}
    for name, counter in counters.items():
        setattr(pipeline, name, counter)
    items = [
        pipeline.prepare(PNG, TEXT, explain=True),
        pipeline.prepare(PNG, None),
        pipeline.prepare(OTHER_PNG, "the big blue dog", explain=True),
        pipeline.prepare(None, TEXT),
        pipeline.prepare(OTHER_PNG, TEXT),
    ]
    results = pipeline.run_items(items)
    # The batch: 5 rows; then one more head call on 2 x 2 rows (the two explained items).
    assert counters["_head"].calls == [5, 4]
    assert counters["_image"].calls == [4]
    assert counters["_text"].calls == [2]  # two distinct texts, each encoded once
    explained = [r.without_image is not None and r.without_text is not None for r in results]
    assert explained == [True, False, True, False, False]
    # A batch where nobody asked costs nothing extra.
    counters["_head"].calls.clear()
    plain = pipeline.run_items([items[1], items[4]])
    assert counters["_head"].calls == [2]
    # Each item's answers are those it gets alone; "without" equals the one-modality request.
    for item, result in zip(items, results, strict=True):
        (alone,) = pipeline.run_items([item])
        np.testing.assert_allclose(result.probabilities, alone.probabilities, rtol=1e-5)
        if item.explain:
            assert item.text is not None
            without_image = pipeline.run([pipeline.prepare(None, item.text)])[0]
            np.testing.assert_allclose(result.without_image, without_image, rtol=1e-5)
            np.testing.assert_allclose(result.without_text, alone.without_text, rtol=1e-5)
    np.testing.assert_allclose(plain[1].probabilities, results[4].probabilities, rtol=1e-5)
