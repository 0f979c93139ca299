"""Triton's model repository extension (``app.core.model_repository``), driven by tritonclient's
HTTP and gRPC clients unmodified: the index, loading a bundle of the repository by name,
unloading it after its requests are answered, names that could escape the repository, the
API keys, and the extension switched off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from app.main import create_app
from tests.support.app_setup import make_settings
from tests.support.gated_service import Gate, gated_app, ready_client
from tests.support.images import encode_image, photo
from tests.support.live_server import serving
from tests.support.server_process import free_port
from tests.support.tiny_bundle import LABELS, make_named_bundle

KEY = "repo-key"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of two bundles, alpha and beta, and a served bundle outside it."""
    root = tmp_path_factory.mktemp("repository")
    make_named_bundle(root / "alpha-dir", "alpha", seed=1)
    make_named_bundle(root / "beta-dir", "beta", seed=2, version="2.0.0")
    (root / "notes.txt").write_text("not a bundle")
    outside = tmp_path_factory.mktemp("outside")
    make_named_bundle(outside / "secret", "secret", seed=3)
    (root / "link-out").symlink_to(outside / "secret")
    make_named_bundle(outside / "served", "served", seed=4)
    return root


@pytest.fixture
def servers(repository: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    settings = make_settings(_served(repository), model_repository=repository, grpc_port=port)
    with serving(create_app(settings)) as address:
        yield address, f"127.0.0.1:{port}"


def _served(repository: Path) -> Path:
    """The bundle served from the start, outside the repository."""
    return next(repository.parent.glob("outside*/served"))


def _text_infer(module: Any, client: Any, model: str) -> np.ndarray:
    tensor = module.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(["a small cat"], dtype=np.object_))
    image = module.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([encode_image(photo())], dtype=np.object_))
    result: np.ndarray = client.infer(model, [image, tensor]).as_numpy("probabilities")
    return result


def _states(index: list[dict[str, Any]]) -> dict[str, str]:
    return {entry["name"]: entry["state"] for entry in index}


def test_index_load_infer_unload_over_http(servers: tuple[str, str]) -> None:
    with httpclient.InferenceServerClient(servers[0]) as client:
        assert _states(client.get_model_repository_index()) == {
            "served": "READY",
            "alpha": "UNAVAILABLE",
            "beta": "UNAVAILABLE",
        }  # the link out of the repository and the text file are not bundles
        assert not client.is_model_ready("alpha")
        client.load_model("alpha")
        assert client.is_model_ready("alpha")
        assert _text_infer(httpclient, client, "alpha").shape == (1, len(LABELS))
        ready = client.get_model_repository_index(query_params=None)
        assert _states(ready)["alpha"] == "READY"
        client.unload_model("alpha")
        assert not client.is_model_ready("alpha")
        with pytest.raises(InferenceServerException, match="no model named 'alpha'"):
            _text_infer(httpclient, client, "alpha")
        assert client.is_model_ready("served")


def test_index_load_and_unload_over_grpc(servers: tuple[str, str]) -> None:
    with grpcclient.InferenceServerClient(servers[1]) as client:
        index = client.get_model_repository_index(as_json=True)["models"]
        assert _states(index)["beta"] == "UNAVAILABLE"
        client.load_model("beta")
        assert client.is_model_ready("beta", "2.0.0")
        assert _text_infer(grpcclient, client, "beta").shape == (1, len(LABELS))
        client.load_model("beta")  # loading a served model reloads it in place
        assert client.is_model_ready("beta")
        client.unload_model("beta")
        assert not client.is_model_ready("beta")
        with pytest.raises(InferenceServerException) as raised:
            client.unload_model("beta")
        assert "StatusCode.NOT_FOUND" in str(raised.value.status())


@pytest.mark.parametrize("name", ["../outside", "secret", "link-out", "a/b", "..", "notes.txt"])
def test_names_outside_the_repository_are_refused(servers: tuple[str, str], name: str) -> None:
    response = httpx.post(f"http://{servers[0]}/v2/repository/models/{name}/load", timeout=30)
    assert response.status_code in (400, 404), response.text
    assert "error" in response.json()
    with grpcclient.InferenceServerClient(servers[1]) as client:
        with pytest.raises(InferenceServerException) as raised:
            client.load_model(name)
        assert str(raised.value.status()) in (
            "StatusCode.INVALID_ARGUMENT",
            "StatusCode.NOT_FOUND",
        )
        assert not client.is_model_ready("secret")


def test_parameters_that_override_files_are_refused(servers: tuple[str, str]) -> None:
    with httpclient.InferenceServerClient(servers[0]) as client:
        with pytest.raises(InferenceServerException, match="no parameters"):
            client.load_model("alpha", config='{"backend": "python"}')
        assert not client.is_model_ready("alpha")


def test_switched_off_without_a_repository(tmp_path: Path) -> None:
    bundle = make_named_bundle(tmp_path / "one", "one", seed=1)
    port = free_port()
    with serving(create_app(make_settings(bundle, grpc_port=port))) as address:
        response = httpx.post(f"http://{address}/v2/repository/models/one/unload", timeout=10)
        assert response.status_code == 403
        assert "FUSIONSERVE_MODEL_REPOSITORY" in response.json()["error"]
        with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as client:
            with pytest.raises(InferenceServerException) as raised:
                client.unload_model("one")
            assert "PERMISSION_DENIED" in str(raised.value.status())
            assert client.is_model_ready("one")


def test_repository_calls_need_the_api_key(repository: Path) -> None:
    settings = make_settings(_served(repository), model_repository=repository, api_keys=[KEY])
    with (
        serving(create_app(settings)) as address,
        httpclient.InferenceServerClient(address) as client,
    ):
        with pytest.raises(InferenceServerException, match="401|API key"):
            client.get_model_repository_index()
        with pytest.raises(InferenceServerException):
            client.load_model("alpha")
        headers = {"Authorization": f"Bearer {KEY}"}
        client.load_model("alpha", headers=headers)
        assert client.is_model_ready("alpha", headers=headers)


@pytest.mark.anyio
async def test_unload_answers_the_requests_holding_the_model_first(
    repository: Path, gate: Gate
) -> None:
    settings = make_settings(_served(repository), model_repository=repository)
    app = gated_app(settings, gate)
    async for client in ready_client(app):
        assert (await client.post("/v2/repository/models/alpha/load")).status_code == 200
        gate.hold()
        form = {"text": "a cat", "model": "alpha"}
        files = {"image": ("i.png", encode_image(photo()))}
        held = asyncio.create_task(client.post("/classify", files=files, data=form))
        await gate.wait_entered()
        unload = asyncio.create_task(client.post("/v2/repository/models/alpha/unload"))
        registry = app.state.core.registry
        for _ in range(1000):  # until the unload has begun (it drops the name at once)
            if "alpha" not in {slot.name for slot in registry.slots}:
                break
            await asyncio.sleep(0)
        # New requests are refused at once while it drains.
        late = await client.post("/classify", files=files, data=form)
        assert late.status_code == 404
        assert not unload.done()  # waits for the held request
        gate.open.set()
        assert (await held).status_code == 200
        assert (await unload).status_code == 200
        listing = (await client.post("/v2/repository/index", json={"ready": True})).json()
        assert [entry["name"] for entry in listing] == ["served"]
