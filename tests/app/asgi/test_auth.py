"""Optional API-key authentication (``Authorization: Bearer``)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.asgi import auth
from app.asgi.auth import METRICS_PATH, ApiKeys, load_api_keys, open_paths
from app.cli import main
from app.config.settings import Settings
from app.errors import StartupError
from app.main import create_app
from tests.support.app_setup import make_settings, wait_ready
from tests.support.gated_service import Gate, gated_app, numbered_form, ready_client
from tests.support.images import encode_image, photo

KEYS = ["first-key", "second-key", "clé-trois"]
UNAUTHORIZED = {"code": "unauthorized", "message": "missing or invalid API key"}


def _is_unauthorized(body: dict[str, dict[str, str]]) -> bool:
    """The one 401 body, whatever failed; only the request id differs between requests."""
    error = dict(body["error"])
    return len(error.pop("request_id", "")) > 0 and error == UNAUTHORIZED


def _files() -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("i.png", encode_image(photo()), "image/png")}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def secured(tiny_bundle_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tiny_bundle_dir, api_keys=KEYS))) as client:
        wait_ready(client)
        yield client


def test_settings_take_a_json_list_or_comma_separated_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FUSIONSERVE_API_KEYS", " a-key, b-key ,,")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["a-key", "b-key"]
    assert "a-key" not in repr(settings)  # secrets stay out of logs and reprs
    monkeypatch.setenv("FUSIONSERVE_API_KEYS", '["with,comma", "other"]')
    assert [k.get_secret_value() for k in Settings().api_keys] == ["with,comma", "other"]
    monkeypatch.setenv("FUSIONSERVE_API_KEYS", "")
    assert Settings().api_keys == []
    monkeypatch.setenv("FUSIONSERVE_API_KEYS", "[not json")
    with pytest.raises(ValidationError):
        Settings()


def test_auth_is_off_without_keys(client: TestClient) -> None:
    response = client.post("/classify", files=_files(), data={"text": "a cat"})
    assert response.status_code == 200
    assert client.get("/info").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "first-key"},
        {"Authorization": "Basic Zmlyc3Qta2V5"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer first-ke"},
        {"Authorization": "Bearer first-key-and-more"},
        {"Authorization": "Bearer FIRST-KEY"},
    ],
    ids=["none", "no-scheme", "basic", "no-key", "empty-key", "prefix", "longer", "case"],
)
def test_every_failure_is_the_same_401(secured: TestClient, headers: dict[str, str]) -> None:
    for response in (
        secured.post("/classify", files=_files(), data={"text": "a cat"}, headers=headers),
        secured.post(
            "/classify/batch",
            files={"images": _files()["image"]},
            data={"texts": "a"},
            headers=headers,
        ),
        secured.get("/info", headers=headers),
        secured.get("/no-such-route", headers=headers),  # unknown paths reveal nothing either
    ):
        assert response.status_code == 401
        assert _is_unauthorized(response.json())
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("key", KEYS)
def test_each_key_is_accepted(secured: TestClient, key: str) -> None:
    for scheme in ("Bearer", "bearer"):
        headers = {"Authorization": f"{scheme} {key}".encode()}  # UTF-8 on the wire
        response = secured.post(
            "/classify", files=_files(), data={"text": "a cat"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert secured.get("/info", headers=headers).status_code == 200


def test_health_stays_open_and_docs_need_a_key(secured: TestClient) -> None:
    assert secured.get("/livez").status_code == 200
    assert secured.get("/readyz").status_code == 200
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert secured.get(path).status_code == 401, path
        assert secured.get(path, headers=_bearer(KEYS[0])).status_code == 200, path


def test_docs_and_metrics_can_be_left_open(tiny_bundle_dir: Path) -> None:
    settings = make_settings(
        tiny_bundle_dir, api_keys=KEYS, auth_protect_docs=False, auth_protect_metrics=False
    )
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
        assert client.get("/info").status_code == 401
    assert METRICS_PATH in open_paths(app, settings, probes=["/livez"])
    protected = make_settings(tiny_bundle_dir, api_keys=KEYS)
    assert METRICS_PATH not in open_paths(create_app(protected), protected, probes=["/livez"])


def test_openapi_declares_the_scheme_and_the_401s(secured: TestClient) -> None:
    schema = secured.get("/openapi.json", headers=_bearer(KEYS[1])).json()
    scheme = schema["components"]["securitySchemes"][auth.SCHEME_NAME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method in (("/classify", "post"), ("/classify/batch", "post"), ("/info", "get")):
        operation = schema["paths"][path][method]
        assert operation["security"] == [{auth.SCHEME_NAME: []}]
        assert "ErrorResponse" in str(operation["responses"]["401"])
    for path in ("/livez", "/readyz"):
        assert "security" not in schema["paths"][path]["get"]
        assert "401" not in schema["paths"][path]["get"]["responses"]


def test_keys_are_compared_with_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = ApiKeys(KEYS)
    for presented, accepted in ((b"first-key", True), (b"wrong", False), (None, False)):
        calls.clear()
        assert keys.accepts(presented) is accepted
        assert len(calls) == len(KEYS)  # no early exit on a match or a mismatch
        assert all(len(c) == 32 for c in calls)  # digests, so the lengths always match


def test_key_file(tmp_path: Path, tiny_bundle_dir: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# deploy keys\n\n  file-key-1  \nfile-key-2\n# file-key-3\n")
    settings = make_settings(tiny_bundle_dir, api_keys=["env-key"], api_keys_file=path)
    keys = load_api_keys(settings)
    assert len(keys) == 3
    assert keys.accepts(b"file-key-1")
    assert keys.accepts(b"env-key")
    assert not keys.accepts(b"# file-key-3")
    with TestClient(create_app(settings)) as client:
        assert client.get("/info").status_code == 401
        wait_ready(client)
        assert client.get("/info", headers=_bearer("file-key-2")).status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read api_keys_file"), ("# only a comment\n\n", "holds no key")],
)
def test_bad_key_file_fails_start_up(
    tmp_path: Path, tiny_bundle_dir: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    with pytest.raises(StartupError, match=message):
        create_app(make_settings(tiny_bundle_dir, api_keys_file=path))


def test_serve_refuses_to_start_with_an_unreadable_key_file(
    tmp_path: Path,
    tiny_bundle_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FUSIONSERVE_API_KEYS_FILE", str(tmp_path / "missing"))
    assert main(["serve", "--bundle", str(tiny_bundle_dir), "--port", "0"]) == 1
    error = capsys.readouterr().err
    assert "cannot read api_keys_file" in error
    assert "No such file or directory" in error


def test_unauthenticated_body_is_not_parsed(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, api_keys=KEYS, max_body_bytes=65536)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        junk = {"Content-Type": "multipart/form-data; boundary=x"}
        # Parsing this would be a 400: a 401 means nobody parsed it.
        response = client.post("/classify", content=b"not multipart", headers=junk)
        assert response.status_code == 401
        assert "connection" not in response.headers  # the body was read: connection reusable
        # Over the body limit (declared or streamed): still the 401, and the connection closes.
        for body in (b"x" * 70000, iter([b"x" * 40000, b"x" * 40000])):
            response = client.post("/classify", content=body, headers=junk)
            assert response.status_code == 401
            assert _is_unauthorized(response.json())
            assert response.headers["connection"] == "close"
        authorized = junk | _bearer(KEYS[0])
        assert client.post("/classify", content=b"junk", headers=authorized).status_code == 400


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_401_comes_before_overload_and_not_ready(tiny_bundle_dir: Path) -> None:
    gate = Gate.opened()
    settings = make_settings(tiny_bundle_dir, api_keys=KEYS, max_in_flight=1)
    app = gated_app(settings, gate)
    files, data = numbered_form(0)
    async for client in ready_client(app):
        client.headers.update(_bearer(KEYS[0]))
        gate.hold()
        admitted = asyncio.create_task(client.post("/classify", files=files, data=data))
        await gate.wait_entered()
        overloaded = await client.post("/classify", files=files, data=data)
        assert overloaded.status_code == 503  # with a key: the overload is reported
        anonymous = await client.post("/classify", files=files, data=data, headers=_bearer("x"))
        assert anonymous.status_code == 401  # without: nothing about the load leaks
        app.state.core.lifecycle.stop_accepting()
        anonymous = await client.post("/classify", files=files, data=data, headers=_bearer("x"))
        assert anonymous.status_code == 401
        gate.open.set()
        assert (await admitted).status_code == 200
