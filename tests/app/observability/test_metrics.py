"""Prometheus metrics: one registry per app, exact counts after real requests, live gauges."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import __version__
from app.config.settings import Settings
from app.core.batching import Batcher
from app.core.engine import build_engine
from app.core.lifecycle import Lifecycle
from app.core.registry import ModelRegistry
from app.core.serving_core import ServingCore
from app.errors import (
    ClientDisconnected,
    DeadlineExceeded,
    InferenceFailed,
    InvalidImage,
    NotReady,
    Overloaded,
    RequestError,
    ShuttingDown,
)
from app.main import create_app
from app.memory.memory_budget import MemoryBudget
from app.observability.metrics import Metrics
from tests.support.app_setup import make_settings
from tests.support.fake_batching import FakeClock, FakeModel
from tests.support.gated_service import Gate, gated_app
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS

REASONS = {
    "memory_busy",
    "overloaded",
    "shutting_down",
    "not_ready",
    "deadline_exceeded",
    "client_disconnected",
}
MODELS = ("image_encoder", "text_encoder", "fusion_head")
BUNDLE = "tiny-test-bundle"
PNG = encode_image(photo(50, 40))
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(ls)[label]: v for (n, ls), v in samples.items() if n == name}


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def _asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def _post(client: httpx.AsyncClient, text: str) -> httpx.Response:
    files = {"image": ("i.png", PNG, "image/png")}
    return await client.post("/classify", files=files, data={"text": text})


@pytest.mark.anyio
async def test_metrics_before_the_bundle_is_loaded(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir))
    async with _asgi_client(app) as client:  # no lifespan: the bundle never loads
        samples = await scrape(client)
        assert value(samples, "fusionserve_ready") == 0
        for per_bundle in (
            "queue_depth",
            "in_flight_items",
            "predicted_wait_seconds",
            "text_cache_hits_total",
        ):
            assert not by_label(samples, f"fusionserve_{per_bundle}", "bundle")
        assert value(samples, "fusionserve_build_info", version=__version__) == 1
        assert by_label(samples, "fusionserve_rejected_total", "reason") == dict.fromkeys(
            REASONS, 0
        )
        assert not by_label(samples, "fusionserve_bundle_info", "name")
        budgets = {"decode": 256 * 2**20, "bodies": 64 * 2**20}  # the settings' defaults
        assert by_label(samples, "fusionserve_memory_budget_bytes", "budget") == budgets
        reserved = by_label(samples, "fusionserve_memory_reserved_bytes", "budget")
        assert reserved == dict.fromkeys(budgets, 0)
        assert value(samples, "fusionserve_decode_memory_waiting") == 0
        assert value(samples, "process_resident_memory_bytes") > 0

        junk = {"Content-Type": "multipart/form-data; boundary=x"}
        assert (await client.post("/classify", content=b"junk", headers=junk)).status_code == 503
        assert (await client.get("/info")).status_code == 503
        samples = await scrape(client)
    assert value(samples, "fusionserve_rejected_total", reason="not_ready") == 2
    requests = "fusionserve_http_requests_total"
    assert value(samples, requests, route="/classify", method="POST", status="503") == 1
    assert value(samples, requests, route="/info", method="GET", status="503") == 1
    assert value(samples, requests, route="/metrics", method="GET", status="200") == 1
    assert value(samples, "fusionserve_memory_reserved_bytes", budget="bodies") == 0


async def _wait_ready(client: httpx.AsyncClient) -> None:
    for _ in range(1000):
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not ready")


def _labels_of(responses: Sequence[httpx.Response]) -> list[dict[str, Any]]:
    """Every classified item of these 200 responses (single and batch)."""
    items: list[dict[str, Any]] = []
    for response in responses:
        body = response.json()
        items.extend([r["result"] for r in body["results"]] if "results" in body else [body])
    return items


@pytest.mark.anyio
async def test_metrics_after_real_traffic(tiny_bundle_dir: Path) -> None:
    gate = Gate.opened()
    settings = make_settings(tiny_bundle_dir, max_in_flight=2)
    app = gated_app(settings, gate)
    async with _asgi_client(app) as client:
        async with app.router.lifespan_context(app):
            await _wait_ready(client)
            ok = [await _post(client, text) for text in ("a cat", "a cat", "bird")]
            ok.append(
                await client.post(
                    "/classify/batch",
                    files=[("images", ("a.png", PNG, "image/png"))] * 2,
                    data={"texts": ["red dog", "blue bird"]},
                )
            )
            missing_text = await client.post(
                "/classify", files={"image": ("i.png", PNG, "image/png")}
            )
            assert missing_text.status_code == 422
            assert (await client.get("/no/such/route")).status_code == 404

            gate.hold()
            running = asyncio.create_task(_post(client, "dog"))
            await gate.wait_entered()
            queued = asyncio.create_task(_post(client, "small dog"))
            classifier = app.state.core.registry.slot(BUNDLE).runner
            while classifier.batcher.queue_depth < 1:
                await asyncio.sleep(0.005)
            busy = await scrape(client)
            refused = await _post(client, "one too many")
            gate.open.set()
            ok += [await running, await queued]
            samples = await scrape(client)
        stopped = await scrape(client)

    assert [r.status_code for r in ok] == [200] * 6
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "overloaded"
    # Scrape-time gauges: the running item and the queued one.
    assert value(busy, "fusionserve_in_flight_items", bundle=BUNDLE) == 2
    assert value(busy, "fusionserve_queue_depth", bundle=BUNDLE) == 1
    assert value(samples, "fusionserve_in_flight_items", bundle=BUNDLE) == 0
    assert value(samples, "fusionserve_queue_depth", bundle=BUNDLE) == 0
    # Two items in flight at the pace learned from the batches before: work ahead; then none.
    assert value(busy, "fusionserve_predicted_wait_seconds", bundle=BUNDLE) > 0
    assert value(samples, "fusionserve_predicted_wait_seconds", bundle=BUNDLE) == 0
    assert value(samples, "fusionserve_ready") == 1
    assert value(samples, "fusionserve_bundle_ready", bundle=BUNDLE) == 1
    assert value(stopped, "fusionserve_ready") == 0

    requests = "fusionserve_http_requests_total"
    classify = {"route": "/classify", "method": "POST"}
    assert value(samples, requests, **classify, status="200") == 5
    assert value(samples, requests, **classify, status="422") == 1
    assert value(samples, requests, **classify, status="503") == 1
    assert value(samples, requests, route="/classify/batch", method="POST", status="200") == 1
    assert value(samples, requests, route="other", method="GET", status="404") == 1
    assert value(samples, requests, route="/metrics", method="GET", status="200") == 1
    durations = "fusionserve_http_request_duration_seconds_count"
    assert value(samples, durations, route="/classify") == 7
    rejected = by_label(samples, "fusionserve_rejected_total", "reason")
    assert rejected == dict.fromkeys(REASONS, 0) | {"overloaded": 1}

    items = _labels_of(ok)
    assert len(items) == 7
    predictions = by_label(samples, "fusionserve_predictions_total", "label")
    assert set(by_label(samples, "fusionserve_predictions_total", "bundle")) == {BUNDLE}
    assert predictions == dict(collections.Counter(item["label"] for item in items))
    assert set(predictions) <= set(LABELS)
    assert value(samples, "fusionserve_top1_probability_count", bundle=BUNDLE) == 7
    assert value(samples, "fusionserve_top1_probability_sum", bundle=BUNDLE) == pytest.approx(
        sum(item["probability"] for item in items)
    )

    stats = classifier.batcher.stats
    assert value(samples, "fusionserve_batch_size_count", bundle=BUNDLE) == stats.batches
    assert value(samples, "fusionserve_batch_size_sum", bundle=BUNDLE) == stats.items == 7
    assert (
        value(samples, "fusionserve_inference_duration_seconds_count", bundle=BUNDLE)
        == stats.batches
    )
    assert value(samples, "fusionserve_queue_wait_duration_seconds_count", bundle=BUNDLE) == 7
    assert value(samples, "fusionserve_preprocess_duration_seconds_count", bundle=BUNDLE) == 7

    cache = classifier.engine.pipeline.text_cache
    assert value(samples, "fusionserve_text_cache_hits_total", bundle=BUNDLE) == cache.hits == 1
    assert value(samples, "fusionserve_text_cache_misses_total", bundle=BUNDLE) == cache.misses == 6

    info = "fusionserve_bundle_info"
    assert value(samples, info, bundle=BUNDLE, name=BUNDLE, version="0.0.1") == 1
    providers = {
        (dict(ls)["bundle"], dict(ls)["model"], dict(ls)["provider"])
        for (name, ls), v in samples.items()
        if name == "fusionserve_execution_provider_info" and v == 1
    }
    assert providers == {(BUNDLE, model, "CPUExecutionProvider") for model in MODELS}


def test_metrics_can_be_turned_off(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir, metrics_enabled=False))
    assert app.state.metrics is None
    assert TestClient(app).get("/metrics").status_code == 404


def test_labels_stay_bounded(tiny_bundle_dir: Path) -> None:
    client = TestClient(create_app(make_settings(tiny_bundle_dir)))
    assert client.request("BREW", "/livez").status_code == 405
    assert client.get("/a/b/c").status_code == 404
    assert client.get("/livez").status_code == 200
    samples = parse(client.get("/metrics").text)
    routes = by_label(samples, "fusionserve_http_request_duration_seconds_count", "route")
    assert routes == {"/livez": 2, "other": 1}
    requests = "fusionserve_http_requests_total"
    assert value(samples, requests, route="/livez", method="other", status="405") == 1
    assert value(samples, requests, route="other", method="GET", status="404") == 1


def test_each_app_has_its_own_registry(tiny_bundle_dir: Path) -> None:
    first = TestClient(create_app(make_settings(tiny_bundle_dir)))
    second = TestClient(create_app(make_settings(tiny_bundle_dir)))
    assert first.get("/livez").status_code == 200
    samples = parse(second.get("/metrics").text)
    assert not by_label(samples, "fusionserve_http_requests_total", "route")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Overloaded("full"), "overloaded"),
        (ShuttingDown("bye"), "shutting_down"),
        (NotReady("loading"), "not_ready"),
        (DeadlineExceeded("late"), "deadline_exceeded"),
        (ClientDisconnected("gone"), "client_disconnected"),
        (InvalidImage("bad"), None),
        (InferenceFailed("broken"), None),
    ],
)
def test_refusals_are_counted_by_reason(error: RequestError, reason: str | None) -> None:
    core = ServingCore(ModelRegistry(Settings(), build_engine), Lifecycle(), MemoryBudget(2**20))
    metrics = Metrics(core)
    metrics.count_error(error)
    metrics.count_error(error)
    rejected = by_label(parse(metrics.render().decode()), "fusionserve_rejected_total", "reason")
    expected = dict.fromkeys(REASONS, 0.0)
    if reason is not None:
        expected[reason] = 2
    assert rejected == expected


class Recorder:
    def __init__(self) -> None:
        self.waits: list[list[float]] = []
        self.batches: list[tuple[int, float]] = []

    def batch_started(self, queue_waits_s: Sequence[float]) -> None:
        self.waits.append(list(queue_waits_s))

    def batch_finished(self, size: int, run_s: float) -> None:
        self.batches.append((size, run_s))


@pytest.mark.anyio
async def test_batcher_reports_queue_waits_and_run_times() -> None:
    model, clock, recorder = FakeModel(), FakeClock(), Recorder()
    with ThreadPoolExecutor(1) as executor:
        batcher: Batcher[int, int] = Batcher(
            model, executor=executor, max_batch_size=4, clock=clock, observer=recorder
        )
        batcher.start()
        model.hold()
        first = asyncio.create_task(batcher.submit(1, 60))
        await model.wait_entered()
        clock.now += 2  # the first batch has run 2 s when the next items arrive
        rest = [asyncio.create_task(batcher.submit(i, 60)) for i in (2, -3)]
        while batcher.queue_depth < 2:
            await asyncio.sleep(0)
        clock.now += 3
        model.gate.set()
        assert await first == 2
        outcomes = await asyncio.gather(*rest, return_exceptions=True)
        await batcher.stop()
    assert outcomes[0] == 4
    assert isinstance(outcomes[1], InferenceFailed)  # -3 poisons its batch, then fails alone
    assert recorder.waits == [[0.0], [3.0, 3.0]]
    # Successful runs only: the first batch (5 s) and the good item's retry after the
    # failed batch of two.
    assert recorder.batches == [(1, 5.0), (1, 0.0)]
