"""KServe's Python SDK (``kserve`` 0.21.0: InferenceRESTClient with protocol v2, and
InferenceGRPCClient), unmodified, against a real server on the tiny bundle, over REST and gRPC:
health, inference with binary and with JSON (or typed) tensors equal to /classify, one modality,
and errors as the SDK surfaces them (an unknown model, a body naming another model, a bad image,
an overload refusal). The SDK runs in its own venv (``tests/support/kserve_sdk.py``)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.app_setup import classified_rows, classify_files
from tests.support.gated_service import IN_POOL, Gate, gated_factory
from tests.support.images import encode_image, photo
from tests.support.kserve_sdk import b64, kserve_calls
from tests.support.live_server import serving_with_grpc
from tests.support.tiny_bundle import LABELS

NAME, VERSION = "tiny-test-bundle", "0.0.1"
IMAGES = [encode_image(photo(60 + 9 * i, 48 + 5 * i, seed=i)) for i in range(3)]
TEXTS = ["a small cat", "the big blue dog photo", "a red bird"]


@pytest.fixture(scope="module")
def servers(optional_bundle_dir: Path) -> Iterator[tuple[str, str]]:
    """(HTTP address, gRPC address) of one server."""
    with serving_with_grpc(optional_bundle_dir, max_items_per_request=4) as both:
        yield both


def _call(servers: tuple[str, str], client: str, op: str = "infer", **fields: Any) -> Any:
    return _calls(servers, [(client, op, fields)])[0]


def _calls(servers: tuple[str, str], calls: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """Each call's outcome through the SDK, in one run of it."""
    url = {"rest": f"http://{servers[0]}", "grpc": servers[1]}
    specs = [
        {"client": client, "op": op, "url": url[client], "model": NAME} | fields
        for client, op, fields in calls
    ]
    return kserve_calls(specs)


def _infer(images: list[bytes] | None, texts: list[str] | None, **fields: Any) -> dict[str, Any]:
    return {"images": None if images is None else b64(images), "texts": texts} | fields


def _answered(outcome: dict[str, Any]) -> dict[str, Any]:
    assert "ok" in outcome, outcome
    answer: dict[str, Any] = outcome["ok"]
    return answer


def _probabilities(answer: dict[str, Any]) -> np.ndarray:
    output = answer["outputs"]["probabilities"]
    assert (output["datatype"], output["dtype"]) == ("FP32", "float32")
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])


def test_health_and_readiness(servers: tuple[str, str]) -> None:
    for client in ("rest", "grpc"):
        outcomes = _calls(
            servers,
            [
                (client, "live", {}),
                (client, "ready", {}),
                (client, "model_ready", {}),
                (client, "model_ready", {"model": "other"}),
            ],
        )
        assert outcomes == [{"ok": True}, {"ok": True}, {"ok": True}, {"ok": False}], client


@pytest.mark.parametrize("client", ["rest", "grpc"])
def test_binary_and_json_tensors_equal_classify(servers: tuple[str, str], client: str) -> None:
    # The SDK writes model_name into every REST body: this is what it answered 400 to.
    expected, labels = classified_rows(servers[0], IMAGES, TEXTS, LABELS)
    binary, as_json = _calls(
        servers,
        [
            (client, "infer", _infer(IMAGES, TEXTS, id="k-1")),
            (client, "infer", _infer(IMAGES, TEXTS, binary=False, version=VERSION)),
        ],
    )
    for answer in (_answered(binary), _answered(as_json)):
        assert answer["model_name"] == NAME
        np.testing.assert_allclose(_probabilities(answer), expected, rtol=1e-6, atol=1e-7)
        assert answer["outputs"]["label"]["data"] == labels
        assert answer["outputs"]["labels"]["data"] == labels  # multiclass: the one class
    assert _answered(binary)["id"] == "k-1"
    assert len({tuple(row) for row in expected.tolist()}) == 3  # the items differ


def test_one_modality_and_chosen_outputs(servers: tuple[str, str]) -> None:
    expected, labels = classified_rows(servers[0], None, TEXTS[:2], LABELS)
    outputs = [["label", True], ["probabilities", False]]
    rest, grpc = _calls(
        servers,
        [
            ("rest", "infer", _infer(None, TEXTS[:2], outputs=outputs)),
            ("grpc", "infer", _infer(None, TEXTS[:2], outputs=outputs)),
        ],
    )
    for answer in (_answered(rest), _answered(grpc)):
        assert list(answer["outputs"]) == ["label", "probabilities"]
        np.testing.assert_allclose(_probabilities(answer), expected, rtol=1e-6, atol=1e-7)
        assert answer["outputs"]["label"]["data"] == labels


def test_errors_as_the_sdk_surfaces_them(servers: tuple[str, str]) -> None:
    broken = [IMAGES[0], IMAGES[1][:40]]
    outcomes = _calls(
        servers,
        [
            ("rest", "infer", _infer(None, TEXTS[:1], model="other", body_model="other")),
            ("grpc", "infer", _infer(None, TEXTS[:1], model="other")),
            ("rest", "infer", _infer(None, TEXTS[:1], body_model="other")),
            ("rest", "infer", _infer(broken, TEXTS[:2])),
            ("grpc", "infer", _infer(broken, TEXTS[:2])),
            ("rest", "infer", _infer(IMAGES * 2, TEXTS * 2)),  # 6 items, over the limit of 4
            ("grpc", "infer", _infer(None, TEXTS[:1], version="9")),
        ],
    )
    unknown_rest, unknown_grpc, mismatch, bad_rest, bad_grpc, too_many, version = (
        o["error"] for o in outcomes
    )
    assert unknown_rest["status"] == 404
    assert "no model named 'other' is served" in unknown_rest["message"]
    assert unknown_grpc["code"] == "NOT_FOUND"
    assert "no model named 'other' is served" in unknown_grpc["details"]
    assert mismatch["status"] == 400
    assert (
        f"model_name 'other' in the body is not the model of the path, '{NAME}'"
        in (mismatch["message"])
    )
    assert bad_rest["status"] == 400
    assert "item 1: the image" in bad_rest["message"]
    assert bad_grpc["code"] == "INVALID_ARGUMENT"
    assert "item 1: the image" in bad_grpc["details"]
    assert too_many["status"] == 413
    assert version["code"] == "NOT_FOUND"
    assert f"model '{NAME}' has no version '9'" in version["details"]


def test_overload_refusal(optional_bundle_dir: Path, gate: Gate) -> None:
    with serving_with_grpc(
        optional_bundle_dir,
        engine_factory=gated_factory(gate),
        **IN_POOL,
        max_in_flight=1,
        max_batch_wait_ms=0,
        retry_after_s=3,
    ) as servers:
        files = classify_files(None, "a held cat")
        gate.hold()
        with httpx.Client(timeout=30) as held_client:
            url = f"http://{servers[0]}/classify"
            held = _in_background(lambda: held_client.post(url, files=files))
            assert gate.entered.wait(10)
            refused_rest, refused_grpc = _calls(
                servers,
                [
                    ("rest", "infer", _infer(None, TEXTS[:1])),
                    ("grpc", "infer", _infer(None, TEXTS[:1])),  # the SDK retries UNAVAILABLE
                ],
            )
            gate.open.set()
            assert held().status_code == 200
    assert refused_rest["error"]["status"] == 503
    assert refused_rest["error"]["retry_after"] == "3"
    assert refused_grpc["error"]["code"] == "UNAVAILABLE"
    assert refused_grpc["error"]["trailing"]["retry-after"] == "3"


def _in_background(call: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    """Start ``call`` in a thread; the returned function waits for its result."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return lambda: future.result(timeout=30)
