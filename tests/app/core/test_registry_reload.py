"""Several bundles: routing by `model`, one batcher each, readiness per bundle, reload in place."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config.settings import Settings
from app.core.engine import Engine, build_engine
from app.core.serving_core import ServingCore
from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.gated_service import IN_POOL, Gate, gated_factory, ready_client
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS, make_named_bundle

pytestmark = pytest.mark.anyio

PNG = encode_image(photo(60, 50, seed=3))
FORM = {"text": "a small red bird"}


@pytest.fixture
def two_bundles(tmp_path: Path) -> tuple[Path, Path]:
    return (
        make_named_bundle(tmp_path / "a", "alpha", seed=1),
        make_named_bundle(tmp_path / "b", "beta", seed=2),
    )


def _settings(bundles: tuple[Path, ...], **overrides: object) -> Settings:
    return make_settings(bundles[0], bundles=list(bundles), **overrides)


def _classify(client: TestClient, **data: str) -> httpx.Response:
    return client.post("/classify", files={"image": ("i.png", PNG, "image/png")}, data=FORM | data)


def _probabilities(body: dict[str, Any]) -> dict[str, float]:
    return {p["label"]: p["probability"] for p in body["predictions"]}


def test_each_bundle_answers_under_its_name(two_bundles: tuple[Path, Path]) -> None:
    alone = {}
    for path in two_bundles:
        with TestClient(create_app(make_settings(path))) as single:
            wait_ready(single)
            alone[path.name] = _probabilities(_classify(single).json())
    assert alone["a"] != alone["b"]  # different weights: routing is observable

    with TestClient(create_app(_settings(two_bundles))) as client:
        wait_ready(client)
        default = _classify(client).json()
        beta = _classify(client, model="beta").json()
        alpha = _classify(client, model="alpha").json()
        batch = client.post(
            "/classify/batch",
            files=[("images", ("i.png", PNG, "image/png"))] * 2,
            data={"texts": [FORM["text"]] * 2, "model": "beta"},
        ).json()
        info = client.get("/info", params={"model": "beta"}).json()
        listing = client.get("/v1/models").json()["models"]
        ready = client.get("/readyz").json()

    assert default["bundle"]["name"] == alpha["bundle"]["name"] == "alpha"
    assert beta["bundle"] == {"name": "beta", "version": "1.0.0"}
    assert _probabilities(default) == _probabilities(alpha) == alone["a"]
    assert _probabilities(beta) == alone["b"]
    assert [_probabilities(r["result"]) for r in batch["results"]] == [alone["b"]] * 2
    assert info["bundle"]["name"] == "beta"
    assert [(m["name"], m["default"], m["ready"]) for m in listing] == [
        ("alpha", True, True),
        ("beta", False, True),
    ]
    assert listing[1]["labels"] == ["cat", "dog", "bird"]
    assert listing[1]["path"] == str(two_bundles[1])
    assert ready["models"] == {"alpha": "ready", "beta": "ready"}


def test_unknown_model_is_a_404_naming_the_served_ones(two_bundles: tuple[Path, Path]) -> None:
    with TestClient(create_app(_settings(two_bundles))) as client:
        wait_ready(client)
        responses = [
            _classify(client, model="gamma"),
            client.get("/info", params={"model": "gamma"}),
            client.get("/v1/models/gamma"),
            client.get("/v1/models/gamma/ready"),
            client.post("/v1/models/gamma/reload"),
        ]
    for response in responses:
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "model_not_found"
        assert error["message"] == "no model named 'gamma' is served (served: alpha, beta)"


def test_each_bundle_has_its_own_batcher(two_bundles: tuple[Path, Path]) -> None:
    app = create_app(_settings(two_bundles))
    with TestClient(app) as client:
        wait_ready(client)
        for _ in range(3):
            assert _classify(client, model="beta").status_code == 200
        assert _classify(client).status_code == 200
        core: ServingCore = app.state.core
        alpha, beta = (slot.runner for slot in core.registry.slots)
        assert alpha is not None
        assert beta is not None
        assert alpha.batcher is not beta.batcher
        assert (alpha.batcher.stats.items, beta.batcher.stats.items) == (1, 3)
        metrics = client.get("/metrics").text
    assert 'fusionserve_batch_size_count{bundle="beta"} 3.0' in metrics
    assert 'fusionserve_batch_size_count{bundle="alpha"} 1.0' in metrics


def test_names_must_differ(tmp_path: Path) -> None:
    first = make_named_bundle(tmp_path / "one", "same", seed=1)
    second = make_named_bundle(tmp_path / "two", "same", seed=2)
    with TestClient(create_app(_settings((first, second)))) as client:
        body = client.get("/readyz").json()
    assert client.get("/livez").status_code == 503
    assert body["status"] == "failed"
    assert body["detail"] == (
        f"two bundles are named 'same' ({first} and {second}); served names must differ"
    )


def test_bundles_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSERVE_BUNDLES", " /m/a , /m/b ,")
    assert Settings().bundle_dirs() == [Path("/m/a"), Path("/m/b")]
    monkeypatch.setenv("FUSIONSERVE_BUNDLES", '["/m/c"]')
    assert Settings().bundle_dirs() == [Path("/m/c")]
    monkeypatch.delenv("FUSIONSERVE_BUNDLES")
    monkeypatch.setenv("FUSIONSERVE_BUNDLE_PATH", "/m/only")
    assert Settings().bundle_dirs() == [Path("/m/only")]


def _blocking_factory(blocked: str, release: threading.Event) -> Callable[[Settings], Engine]:
    """Loads every bundle at once, except the one in directory ``blocked``: it waits."""

    def factory(settings: Settings) -> Engine:
        if settings.bundle_path.name == blocked:
            assert release.wait(10), "test never released the load"
        return build_engine(settings)

    return factory


async def _get(client: httpx.AsyncClient, path: str) -> tuple[int, Any]:
    response = await client.get(path)
    return response.status_code, response.json()


async def _post(client: httpx.AsyncClient, **data: str) -> httpx.Response:
    files = {"image": ("i.png", PNG, "image/png")}
    return await client.post("/classify", files=files, data=FORM | data)


async def test_a_bundle_serves_while_the_next_one_loads(two_bundles: tuple[Path, Path]) -> None:
    release = threading.Event()
    app = create_app(_settings(two_bundles), engine_factory=_blocking_factory("b", release))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(500):
                if (await _get(client, "/v1/models/alpha/ready"))[0] == 200:
                    break
                await asyncio.sleep(0.01)
            assert (await _post(client, model="alpha")).status_code == 200
            loading = await _post(client, model="beta")
            readyz = await _get(client, "/readyz")
            beta_ready = await _get(client, "/v1/models/beta/ready")
            release.set()
            for _ in range(500):
                if (await _get(client, "/readyz"))[0] == 200:
                    break
                await asyncio.sleep(0.01)
            assert (await _post(client, model="beta")).status_code == 200

    assert loading.status_code == 503
    assert loading.json()["error"] == {
        "code": "not_ready",
        "message": "model 'beta' is not ready (status: loading)",
        "request_id": loading.headers["x-request-id"],
    }
    assert readyz == (
        503,
        {
            "status": "loading",
            "ready": False,
            "providers": {},
            "models": {"alpha": "ready", "beta": "loading"},
        },
    )
    assert beta_ready[0] == 503
    assert (beta_ready[1]["status"], beta_ready[1]["ready"]) == ("loading", False)


def _rewrite(path: Path, *, seed: int, version: str) -> None:
    """Replace the bundle at ``path`` by new weights and a new version, same name."""
    name = json.loads((path / "manifest.json").read_text())["name"]
    shutil.rmtree(path)
    make_named_bundle(path, name, seed=seed, version=version)


def _gate_version(gate: Gate, name: str, version: str) -> Callable[[Settings], Engine]:
    """Engines of bundle ``name`` at ``version`` run their batches through ``gate``."""
    gated = gated_factory(gate)

    def factory(settings: Settings) -> Engine:
        manifest = json.loads((settings.bundle_path / "manifest.json").read_text())
        if (manifest["name"], manifest["version"]) == (name, version):
            return gated(settings)  # type: ignore[operator, no-any-return]
        return build_engine(settings)

    return factory


async def test_reload_switches_without_dropping_a_request(two_bundles: tuple[Path, Path]) -> None:
    gate = Gate.opened()
    factory = _gate_version(gate, "beta", "1.0.0")
    app = create_app(_settings(two_bundles, **IN_POOL), engine_factory=factory)
    async for client in ready_client(app):
        before = await _post(client, model="beta")
        old = app.state.core.registry.slot("beta").runner
        gate.hold()  # the old version's next batch blocks in the model
        held = asyncio.create_task(_post(client, model="beta"))
        await gate.wait_entered()
        _rewrite(two_bundles[1], seed=7, version="2.0.0")
        reloaded = await client.post("/v1/models/beta/reload")
        after = await _post(client, model="beta")  # the new version, while the old one drains
        draining = not old.stopped
        while_draining = (await client.get("/v1/models/beta")).json()["draining"]
        gauge = 'fusionserve_in_flight_items{bundle="beta"} 1.0'
        counted = gauge in (await client.get("/metrics")).text  # the held item, on the old one
        gate.open.set()
        answered = await held
        for _ in range(500):  # the previous version stops once its request is answered
            if old.stopped:
                break
            await asyncio.sleep(0.01)
        listing = (await client.get("/v1/models/beta")).json()
        alpha = await _post(client)

    assert reloaded.status_code == 200, reloaded.json()
    body = reloaded.json()
    assert (body["name"], body["previous_version"], body["version"]) == ("beta", "1.0.0", "2.0.0")
    assert body["draining"] == 1
    assert draining
    assert while_draining == 1
    assert counted
    assert old.stopped
    assert answered.status_code == 200
    assert answered.json()["bundle"]["version"] == "1.0.0"
    assert _probabilities(answered.json()) == _probabilities(before.json())
    assert after.status_code == 200
    assert after.json()["bundle"]["version"] == "2.0.0"
    assert _probabilities(after.json()) != _probabilities(before.json())
    assert (listing["version"], listing["reloads"], listing["draining"]) == ("2.0.0", 1, 0)
    assert alpha.json()["bundle"]["name"] == "alpha"


async def test_a_reloaded_runner_starts_from_the_pace_its_predecessor_measured(
    two_bundles: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    scales = []

    def relative_cost(new: Engine, old: Engine, size: int) -> float:
        assert new is not old
        scales.append(size)
        return 1.5  # a batch costs the new version 1.5x what it costs the old

    monkeypatch.setattr("app.core.registry.relative_cost", relative_cost)
    app = create_app(_settings(two_bundles))
    async for client in ready_client(app):
        registry = app.state.core.registry
        first = registry.slot("beta").runner
        assert not first.pace.confirmed  # a first start: the warm-up's seed only
        assert first.pace.item_s is not None
        assert first.pace.item_s > 0
        for _ in range(2):  # answers confirm a pace: the first sample comes after 8
            await asyncio.gather(*(_post(client, model="beta") for _ in range(8)))
        assert first.pace.confirmed
        measured = first.pace.item_s
        assert (await client.post("/v1/models/beta/reload")).status_code == 200
        second = registry.slot("beta").runner

    assert second is not first
    assert scales == [app.state.settings.max_batch_size]
    assert second.pace.confirmed
    assert second.pace.item_s == pytest.approx(measured * 1.5)


async def test_a_failed_reload_leaves_the_old_version_serving(
    two_bundles: tuple[Path, Path],
) -> None:
    app = create_app(_settings(two_bundles))
    async for client in ready_client(app):
        before = await _post(client, model="beta")
        (two_bundles[1] / "head.onnx").write_bytes(b"not onnx")  # hash no longer matches
        failed = await client.post("/v1/models/beta/reload")
        after = await _post(client, model="beta")
        listing = (await client.get("/v1/models/beta")).json()
        make_named_bundle(two_bundles[1], "gamma", seed=2)  # intact again, but renamed
        rename = await client.post("/v1/models/beta/reload")

    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "reload_failed"
    assert error["message"].startswith(
        f"reloading 'beta' from {two_bundles[1]} failed; version 1.0.0 serves on: "
        "bundle field 'fusion_head.sha256': head.onnx has sha256"
    )
    assert after.status_code == 200
    assert _probabilities(after.json()) == _probabilities(before.json())
    assert (listing["status"], listing["reloads"]) == ("ready", 0)
    assert rename.status_code == 500
    assert "is now named 'gamma', not 'beta'" in rename.json()["error"]["message"]


async def test_one_reload_at_a_time(two_bundles: tuple[Path, Path]) -> None:
    release = threading.Event()
    loads: list[str] = []

    def factory(settings: Settings) -> Engine:
        loads.append(settings.bundle_path.name)
        if len(loads) > 2:  # the reload, not the start-up
            assert release.wait(10)
        return build_engine(settings)

    app = create_app(_settings(two_bundles), engine_factory=factory)
    async for client in ready_client(app):
        first = asyncio.create_task(client.post("/v1/models/beta/reload"))
        while len(loads) < 3:
            await asyncio.sleep(0.01)
        second = await client.post("/v1/models/beta/reload")
        served = await _post(client, model="beta")  # the old version serves meanwhile
        release.set()
        assert (await first).status_code == 200
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "reload_in_progress"
    assert served.status_code == 200


def test_reload_can_be_switched_off(two_bundles: tuple[Path, Path]) -> None:
    with TestClient(create_app(_settings(two_bundles, reload_enabled=False))) as client:
        wait_ready(client)
        response = client.post("/v1/models/beta/reload")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reload_disabled"


def test_reload_needs_a_key_when_keys_are_set(two_bundles: tuple[Path, Path]) -> None:
    app = create_app(_settings(two_bundles, api_keys="k1"))
    with TestClient(app) as client:
        wait_ready(client)
        refused = client.post("/v1/models/beta/reload")
        listing = client.get("/v1/models")
        done = client.post("/v1/models/beta/reload", headers={"Authorization": "Bearer k1"})
    assert refused.status_code == 401
    assert listing.status_code == 401
    assert done.status_code == 200


def test_openapi_documents_the_model_routes(two_bundles: tuple[Path, Path]) -> None:
    schema = TestClient(create_app(_settings(two_bundles))).get("/openapi.json").json()
    reload = schema["paths"]["/v1/models/{name}/reload"]["post"]["responses"]
    assert set(reload) == {"200", "403", "404", "409", "422", "500", "503"}
    for path in ("/classify", "/classify/batch"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert "model" in body["schema"]["properties"]


async def test_reloads_under_steady_traffic_drop_nothing(two_bundles: tuple[Path, Path]) -> None:
    app = create_app(_settings(two_bundles, max_in_flight=64))
    versions: list[str] = []
    statuses: list[int] = []
    async for client in ready_client(app):
        stop = asyncio.Event()

        async def traffic(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
            while not stop.is_set():
                response = await _post(client, model="beta")
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["bundle"]["version"])

        senders = [asyncio.create_task(traffic(client, stop)) for _ in range(4)]
        reloads = []
        for version in ("2.0.0", "3.0.0", "4.0.0"):
            await asyncio.sleep(0.05)
            _rewrite(two_bundles[1], seed=int(version[0]) + 10, version=version)
            reloads.append(await client.post("/v1/models/beta/reload"))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*senders)

    assert [r.status_code for r in reloads] == [200, 200, 200]
    assert statuses == [200] * len(statuses)
    assert len(statuses) > 20
    assert {"1.0.0", "4.0.0"} <= set(versions)
    assert set(versions) <= {"1.0.0", "2.0.0", "3.0.0", "4.0.0"}


def test_open_inference_protocol_serves_each_bundle(two_bundles: tuple[Path, Path]) -> None:
    image = base64.b64encode(PNG).decode()
    body = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]},
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": [FORM["text"]]},
        ]
    }
    with TestClient(create_app(_settings(two_bundles))) as client:
        wait_ready(client)
        by_name = {}
        for name in ("alpha", "beta"):
            answer = client.post(f"/v2/models/{name}/infer", json=body).json()
            outputs = {o["name"]: o["data"] for o in answer["outputs"]}
            by_name[name] = (answer["model_name"], outputs["probabilities"])
        classify = _probabilities(_classify(client, model="beta").json())
        ready = client.get("/v2/models/beta/ready").status_code
        missing = client.post("/v2/models/gamma/infer", json=body)

    assert by_name["alpha"][0] == "alpha"
    assert by_name["beta"][0] == "beta"
    assert by_name["alpha"][1] != by_name["beta"][1]
    assert by_name["beta"][1] == pytest.approx([classify[label] for label in LABELS], abs=1e-7)
    assert ready == 200
    assert missing.status_code == 404
    assert missing.json() == {"error": "no model named 'gamma' is served (served: alpha, beta)"}
