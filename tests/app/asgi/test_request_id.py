"""X-Request-ID: echoed or generated, on every response, and in every error envelope."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from app.asgi.request_id import RequestIdMiddleware, accept_request_id, new_request_id
from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.failing_engines import broken_prepare, failing_run
from tests.support.images import encode_image, photo

PNG = encode_image(photo(40, 30))
GENERATED = re.compile(r"[0-9a-f]{32}")


def _classify(client: TestClient, request_id: str | None = None, **form: str) -> httpx.Response:
    headers = {"X-Request-ID": request_id} if request_id is not None else {}
    return client.post(
        "/classify",
        files={"image": ("i.png", PNG, "image/png")},
        data={"text": "a cat"} | form,
        headers=headers,
    )


def _assert_envelope(response: httpx.Response, status: int, code: str, request_id: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"] == request_id
    assert response.json()["error"] == {
        "code": code,
        "message": response.json()["error"]["message"],
        "request_id": request_id,
    }


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/info", "/openapi.json"])
def test_a_valid_id_is_echoed(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"X-Request-ID": "req-42:abc/DEF"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42:abc/DEF"


def test_an_id_is_generated_when_absent(client: TestClient) -> None:
    first, second = _classify(client), _classify(client)
    assert first.status_code == second.status_code == 200
    ids = [r.headers["x-request-id"] for r in (first, second)]
    assert all(GENERATED.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    "value",
    [b"x" * 129, b"caf\xc3\xa9", b"tab\there", b"del\x7f", b"\xff\xfe"],
    ids=["too-long", "non-ascii", "control", "del", "latin1"],
)
def test_an_invalid_id_is_replaced(client: TestClient, value: bytes) -> None:
    response = client.get("/livez", headers={"X-Request-ID": value})  # type: ignore[dict-item]
    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["x-request-id"])


def test_max_length_is_a_setting(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir, request_id_max_length=8))
    client = TestClient(app)
    kept = client.get("/livez", headers={"X-Request-ID": "12345678"})
    assert kept.headers["x-request-id"] == "12345678"
    replaced = client.get("/livez", headers={"X-Request-ID": "123456789"})
    assert GENERATED.fullmatch(replaced.headers["x-request-id"])


def test_accept_request_id_bounds() -> None:
    assert accept_request_id("a b~!", 5) == "a b~!"  # printable ASCII, space included
    assert accept_request_id("abcdef", 5) != "abcdef"
    assert GENERATED.fullmatch(accept_request_id("", 5))
    assert GENERATED.fullmatch(accept_request_id(None, 5))


def test_validation_errors_carry_the_id(client: TestClient) -> None:
    response = client.post(
        "/classify",
        files={"image": ("i.png", PNG, "image/png")},
        data={"text": "a cat", "top_k": "many"},
        headers={"X-Request-ID": "v1"},
    )
    _assert_envelope(response, 422, "invalid_request", "v1")
    bad_image = client.post(
        "/classify",
        files={"image": ("i.png", b"not an image", "image/png")},
        data={"text": "a cat"},
        headers={"X-Request-ID": "v2"},
    )
    _assert_envelope(bad_image, 415, "unsupported_image_format", "v2")


def test_not_found_carries_the_id(client: TestClient) -> None:
    response = client.get("/no/such/route", headers={"X-Request-ID": "nf"})
    _assert_envelope(response, 404, "not_found", "nf")


def test_a_generated_id_is_in_the_envelope(client: TestClient) -> None:
    response = client.get("/no/such/route")
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    assert GENERATED.fullmatch(response.headers["x-request-id"])


def test_gate_answers_carry_the_id(tiny_bundle_dir: Path) -> None:
    # No lifespan: the bundle never loads, so the gate refuses before parsing.
    app = create_app(make_settings(tiny_bundle_dir, max_body_bytes=1024))
    client = TestClient(app)
    junk = {"Content-Type": "multipart/form-data; boundary=x", "X-Request-ID": "g1"}
    _assert_envelope(
        client.post("/classify", content=b"junk", headers=junk), 503, "not_ready", "g1"
    )
    junk["X-Request-ID"] = "g2"
    too_large = client.post("/classify", content=b"x" * 2048, headers=junk)
    _assert_envelope(too_large, 413, "payload_too_large", "g2")
    assert too_large.headers["connection"] == "close"


def test_batch_item_errors_carry_the_id(client: TestClient) -> None:
    response = client.post(
        "/classify/batch",
        files=[
            ("images", ("a.png", PNG, "image/png")),
            ("images", ("b.png", b"junk", "image/png")),
        ],
        data={"texts": ["a cat", "a dog"]},
        headers={"X-Request-ID": "b1"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "b1"
    good, bad = response.json()["results"]
    assert good["error"] is None
    assert bad["error"]["request_id"] == "b1"
    assert bad["error"]["code"] == "unsupported_image_format"


def test_unhandled_errors_carry_the_id(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir), engine_factory=broken_prepare)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        response = _classify(client, "boom-1")
    _assert_envelope(response, 500, "internal_error", "boom-1")


def test_inference_failures_carry_the_id(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir), engine_factory=failing_run)
    with TestClient(app) as client:
        wait_ready(client)
        _assert_envelope(_classify(client, "inf-1"), 500, "inference_failed", "inf-1")


def test_openapi_documents_the_request_id(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "request_id" in schemas["ErrorDetail"]["properties"]
    assert schemas["ErrorResponse"]["properties"]["error"]["$ref"].endswith("/ErrorDetail")


def test_generated_ids_are_128_random_bits() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(GENERATED.fullmatch(i) for i in ids)
    # Every hex digit takes every value (a constant or a short counter would not).
    for position in range(32):
        assert len({i[position] for i in ids}) == 16


def test_an_id_the_app_set_is_replaced_not_doubled() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-request-id", b"inner"), (b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"r-1")]}
    asyncio.run(RequestIdMiddleware(app, max_length=64)(scope, receive, send))
    assert sent[0]["headers"] == [(b"content-type", b"text/plain"), (b"x-request-id", b"r-1")]
