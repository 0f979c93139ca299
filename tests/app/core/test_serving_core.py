"""The serving core on the tiny bundle, as every protocol adapter calls it: one result per
item in label order, each item failing alone, routing by name and version, and the lifecycle
refusing new work; the REST and Open Inference Protocol adapters give its numbers unchanged."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from app.config.settings import Settings
from app.core.classification import ClassifiedItem, ClassifyInput
from app.core.serving_core import ServingCore
from app.errors import InvalidText, ModelNotFound, RequestError, ShuttingDown
from app.main import create_app
from tests.support.gated_service import ready_client
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS

pytestmark = pytest.mark.anyio

PNG = encode_image(photo(70, 50, seed=5), "PNG")
TEXT = "the big blue dog photo"


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async for client in ready_client(app):
        yield app, client


def core_of(app: FastAPI) -> ServingCore:
    core: ServingCore = app.state.core
    return core


async def test_each_item_is_answered_in_label_order_or_fails_alone(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    core = core_of(served[0])
    items = [
        ClassifyInput(PNG, TEXT),
        ClassifyInput(PNG, "\x00 not a text"),
        ClassifyInput(PNG, TEXT),
    ]
    result = await core.classify(items)
    assert result.manifest.name == "tiny-test-bundle"
    assert result.labels == LABELS
    first, failed, last = result.items
    assert isinstance(first, ClassifiedItem)
    assert isinstance(last, ClassifiedItem)
    assert isinstance(failed, InvalidText)
    assert first.probabilities.shape == (len(LABELS),)
    assert float(first.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(first.probabilities, last.probabilities, rtol=1e-5)
    assert first.top == int(np.argmax(first.probabilities))
    assert first.missing is None
    assert first.timings.total_s == pytest.approx(
        first.timings.preprocess_s + first.timings.inference_s
    )
    assert first.without_image is None  # explain was not asked
    with pytest.raises(InvalidText):
        (await core.classify([items[1]])).single()


async def test_routing_by_name_and_version(served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    core = core_of(served[0])
    version = (await core.classify([ClassifyInput(PNG, TEXT)])).manifest.version
    named = await core.classify([ClassifyInput(PNG, TEXT)], "tiny-test-bundle", version)
    assert isinstance(named.single(), ClassifiedItem)
    with pytest.raises(ModelNotFound, match="no model named 'other'"):
        await core.classify([ClassifyInput(PNG, TEXT)], "other")
    with pytest.raises(ModelNotFound, match="has no version '9'"):
        await core.classify([ClassifyInput(PNG, TEXT)], "tiny-test-bundle", "9")


async def test_the_adapters_give_the_cores_numbers(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = served
    wanted = (await core_of(app).classify([ClassifyInput(PNG, TEXT)])).single().probabilities
    files = {"image": ("a.png", PNG, "image/png"), "text": (None, TEXT)}
    rest = (await client.post("/classify", files=files)).json()
    by_label = {p["label"]: p["probability"] for p in rest["predictions"]}
    np.testing.assert_allclose([by_label[label] for label in LABELS], wanted, rtol=1e-6)
    assert rest["label"] == LABELS[int(np.argmax(wanted))]
    inputs = [
        {
            "name": "image",
            "datatype": "BYTES",
            "shape": [1],
            "data": [base64.b64encode(PNG).decode()],
        },
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]},
    ]
    oip = (await client.post("/v2/models/tiny-test-bundle/infer", json={"inputs": inputs})).json()
    outputs = {output["name"]: output for output in oip["outputs"]}
    np.testing.assert_allclose(outputs["probabilities"]["data"], wanted, rtol=1e-6)
    assert outputs["label"]["data"] == [rest["label"]]


async def test_nothing_new_once_stopping(served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    core = core_of(served[0])
    assert core.refusal() is None
    core.lifecycle.stop_accepting()
    refusal = core.refusal()
    assert isinstance(refusal, ShuttingDown)
    with pytest.raises(ShuttingDown):
        await core.classify([ClassifyInput(PNG, TEXT)])
    runner = core.registry.default.runner  # type: ignore[union-attr]
    assert runner is not None
    assert isinstance(runner.refusal(), RequestError)  # admission reads the same lifecycle
