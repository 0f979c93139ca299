"""A corpus of hostile and unusual requests against one running app.

Each refused case gets its exact status and error code in the JSON envelope, never quotes the
input back, and leaves the service answering a normal request exactly as before.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image

from app.main import create_app
from tests.support import corpus
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.tiny_bundle import LABELS

# Every request's file is named with this; it must never come back.
MARKER = "qx7-marker"
FILENAME = f"{MARKER}<b>.png"
PNG = encode_image(photo(80, 60), "PNG")
TEXT = "a small cat"

LIMITS: dict[str, Any] = {
    "max_body_bytes": 1024 * 1024,
    "max_image_bytes": 512 * 1024,
    "max_image_pixels": 4_000_000,
    "max_text_chars": 200,
    "max_text_field_bytes": 2048,
    "max_items_per_request": 4,
    "decode_memory_mb": 300,
    "body_memory_mb": 8,
}


@pytest.fixture(scope="module")
def service(tiny_bundle_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tiny_bundle_dir, **LIMITS))) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def baseline(service: TestClient) -> dict[str, float]:
    return _probabilities(_classify(service))


def _post(client: TestClient, path: str = "/classify", **request: Any) -> Response:
    return client.post(path, **request)


def _form(image: bytes = PNG, text: str = TEXT, **fields: str) -> dict[str, Any]:
    return {"files": {"image": (FILENAME, image, "image/png")}, "data": {"text": text} | fields}


def _classify(client: TestClient, image: bytes = PNG, text: str = TEXT) -> Response:
    return _post(client, **_form(image, text))


def _probabilities(response: Response) -> dict[str, float]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert {p["label"] for p in body["predictions"]} == set(LABELS)
    return {p["label"]: p["probability"] for p in body["predictions"]}


def _multipart(
    parts: list[tuple[str, bytes, str | None]], boundary: str = "b0und"
) -> dict[str, Any]:
    """A hand-built multipart body: raw bytes in text parts, names of any shape."""
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return {
        "content": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    }


def _batch(count: int) -> dict[str, Any]:
    files = [("images", (FILENAME, PNG, "image/png")) for _ in range(count)]
    return {"files": files, "data": {"texts": [TEXT] * count}}


@dataclass(frozen=True)
class Case:
    status: int
    code: str
    request: dict[str, Any]
    path: str = "/classify"
    secret: list[str] = field(default_factory=list)  # input that must not come back


def _text_case(text: str, status: int = 422, code: str = "invalid_text") -> Case:
    return Case(status, code, _form(text=text), secret=[text] if text.strip() else [])


RANDOM = b"\x00" + np.random.default_rng(7).bytes(2047)
TIFF_32_BIT = encode_image(
    Image.fromarray(np.arange(64 * 64, dtype=np.int32).reshape(64, 64)), "TIFF"
)
JPEG = encode_image(photo(80, 60), "JPEG", quality=90)

CASES: dict[str, Case] = {
    # Files that are not images, or not of an allowed format.
    "zero-byte": Case(422, "invalid_image", _form(b"")),
    "random-bytes": Case(415, "unsupported_image_format", _form(RANDOM)),
    "eps": Case(415, "unsupported_image_format", _form(corpus.eps())),
    "pdf": Case(415, "unsupported_image_format", _form(corpus.pdf())),
    "psd": Case(415, "unsupported_image_format", _form(corpus.psd())),
    "svg": Case(415, "unsupported_image_format", _form(corpus.SVG)),
    "html": Case(415, "unsupported_image_format", _form(corpus.HTML)),
    # Broken images of allowed formats.
    "truncated-jpeg": Case(422, "invalid_image", _form(JPEG[: len(JPEG) // 2])),
    "truncated-png": Case(422, "invalid_image", _form(PNG[: len(PNG) // 2])),
    "corrupt-png-header": Case(422, "invalid_image", _form(corpus.corrupt_png_header())),
    "gif-signature-only": Case(422, "invalid_image", _form(b"GIF89a but not really")),
    "32-bit-integer-tiff": Case(422, "invalid_image", _form(TIFF_32_BIT)),
    # Degenerate sizes.
    "1x1": Case(422, "invalid_image", _form(encode_image(photo(1, 1)))),
    "1x300": Case(422, "invalid_image", _form(encode_image(photo(1, 300)))),
    "8x400-aspect-ratio": Case(422, "invalid_image", _form(encode_image(photo(8, 400)))),
    # Decompression bombs: refused from the header (the IDAT could not fill them anyway).
    "bomb-100000x100000": Case(
        413, "image_too_large", _form(corpus.png_header_only(100_000, 100_000))
    ),
    "bomb-3000x3000": Case(413, "image_too_large", _form(corpus.png_header_only(3000, 3000))),
    "bomb-blank-2500x2500": Case(413, "image_too_large", _form(corpus.blank_png(2500, 2500))),
    # Size limits.
    "image-over-max-image-bytes": Case(413, "payload_too_large", _form(bytes(600 * 1024))),
    "body-over-max-body-bytes": Case(413, "payload_too_large", _form(bytes(1100 * 1024))),
    "text-field-over-max-bytes": Case(413, "field_too_large", _form(text="y" * 3000)),
    # Text.
    "text-empty": _text_case("", 422, "invalid_text"),
    "text-whitespace": _text_case(" \n\t\u3000 "),
    "text-invisible-only": _text_case("\u200d\u200b\u2060"),
    "text-over-max-chars": _text_case("word " * 60),
    "text-nul": _text_case("secret\x00payload"),
    "text-bell": _text_case("secret\x07payload"),
    "text-private-use": _text_case("secret\ue000payload"),
    "text-noncharacter": _text_case("secret\uffffpayload"),
    "text-lone-surrogate-bytes": Case(
        422,
        "invalid_text",
        _multipart([("image", PNG, FILENAME), ("text", b"secret \xed\xa0\x80 payload", None)]),
        secret=["secret"],
    ),
    # Form structure.
    "extra-field": Case(422, "invalid_request", _form(colour="red")),
    "extra-field-odd-name": Case(
        422,
        "invalid_request",
        _multipart(
            [("image", PNG, FILENAME), ("text", b"a cat", None), ("<x onload=1>", b"1", None)]
        ),
        secret=["<x onload=1>"],
    ),
    "duplicate-image": Case(
        422,
        "invalid_request",
        _multipart([("image", PNG, FILENAME), ("image", PNG, FILENAME), ("text", b"a cat", None)]),
    ),
    "duplicate-text": Case(
        422,
        "invalid_request",
        _multipart([("image", PNG, FILENAME), ("text", b"a cat", None), ("text", b"a dog", None)]),
    ),
    "duplicate-top-k": Case(
        422,
        "invalid_request",
        _multipart(
            [("image", PNG, FILENAME), ("text", b"cat", None)] + [("top_k", b"1", None)] * 2
        ),
    ),
    "text-sent-as-file": Case(
        422, "invalid_request", _multipart([("image", PNG, FILENAME), ("text", b"a cat", "t.txt")])
    ),
    "too-many-fields": Case(  # 4 items: 4 texts and the 4 scalar fields at most
        413,
        "too_many_items",
        _multipart([("image", PNG, FILENAME)] + [("text", b"a cat", None)] * 9),
    ),
    "part-without-name": Case(
        400,
        "invalid_multipart",
        {
            "content": b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
    ),
    "multipart-without-boundary": Case(
        400,
        "invalid_multipart",
        {"content": b"--b\r\n\r\n--b--\r\n", "headers": {"Content-Type": "multipart/form-data"}},
    ),
    "batch-too-many-files": Case(413, "too_many_items", _batch(5), "/classify/batch"),
    "batch-extra-field": Case(
        422,
        "invalid_request",
        _batch(2) | {"data": {"texts": [TEXT] * 2, "x": "1"}},
        "/classify/batch",
    ),
    "batch-duplicate-top-k": Case(
        422,
        "invalid_request",
        _multipart(
            [("images", PNG, FILENAME), ("texts", b"a cat", None)] + [("top_k", b"1", None)] * 2
        ),
        "/classify/batch",
    ),
    # Media types.
    "json": Case(415, "unsupported_media_type", {"json": {"image": "x", "text": TEXT}}),
    "text-plain": Case(
        415, "unsupported_media_type", {"content": TEXT, "headers": {"Content-Type": "text/plain"}}
    ),
    "no-content-type": Case(415, "unsupported_media_type", {"content": b"\x89PNG"}),
    "urlencoded": Case(415, "unsupported_media_type", {"data": {"text": TEXT}}),
    "batch-json": Case(
        415, "unsupported_media_type", {"json": {"texts": [TEXT]}}, "/classify/batch"
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused(service: TestClient, baseline: dict[str, float], name: str) -> None:
    case = CASES[name]
    response = _post(service, case.path, **case.request)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == case.code
    assert body["error"]["message"]
    for secret in [MARKER, *case.secret]:
        assert secret not in response.text
    # Still healthy, and still the same answers.
    assert _probabilities(_classify(service)) == pytest.approx(baseline, abs=1e-6)


def test_other_methods_are_not_gated(service: TestClient) -> None:
    for method in ("PUT", "PATCH"):
        response = service.request(method, "/classify", json={"text": TEXT})
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_limits_are_reported(service: TestClient) -> None:
    reported = service.get("/info").json()["settings"]
    assert reported["max_text_field_bytes"] == LIMITS["max_text_field_bytes"]
    assert reported["max_image_aspect_ratio"] == 20.0
    for name in ("decode_memory_mb", "body_memory_mb"):
        assert reported[name] == LIMITS[name]


def test_error_names_the_unexpected_field(service: TestClient) -> None:
    message = _post(service, **_form(colour="red")).json()["error"]["message"]
    expected = "the form takes explain, image, model, priority, text, top_k"
    assert message == f"unexpected field 'colour'; {expected}"
    message = _post(service, **CASES["duplicate-image"].request).json()["error"]["message"]
    assert message == "field 'image' was sent 2 times; send it once"


def _same_as(service: TestClient, image: bytes, reference: bytes, tolerance: float = 1e-6) -> None:
    got = _probabilities(_classify(service, image))
    assert got == pytest.approx(_probabilities(_classify(service, reference)), abs=tolerance)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})],
    ids=["gif", "webp", "apng"],
)
def test_animated_images_use_the_first_frame(
    service: TestClient, fmt: str, params: dict[str, object]
) -> None:
    red, blue = corpus.solid(corpus.RED), corpus.solid(corpus.BLUE)
    animation = corpus.animated(fmt, [red, blue], **params)
    with Image.open(io.BytesIO(animation)) as opened:
        assert opened.n_frames == 2
    _same_as(service, animation, encode_image(red))
    # The two frames do classify differently, so the check above can fail.
    assert _probabilities(_classify(service, encode_image(red))) != _probabilities(
        _classify(service, encode_image(blue))
    )


def test_lossless_formats_classify_like_png(service: TestClient) -> None:
    image = photo(80, 60)
    for fmt in ("TIFF", "BMP", "WEBP"):
        params = {"lossless": True} if fmt == "WEBP" else {}
        _same_as(service, encode_image(image, fmt, **params), PNG)


def test_modes_are_converted(service: TestClient) -> None:
    grey8, grey16 = corpus.grey16()
    _same_as(service, grey16, encode_image(Image.fromarray(grey8)))
    _same_as(service, corpus.cmyk_jpeg(), encode_image(photo(48, 40)), tolerance=0.01)
    for data in (corpus.palette_with_transparency(), corpus.grey_alpha(), corpus.rgba()):
        assert _probabilities(_classify(service, data))


def test_huge_exif_is_fine(service: TestClient) -> None:
    with_exif = corpus.huge_exif_jpeg()
    assert len(with_exif) > 60_000
    plain = encode_image(photo(48, 40), "JPEG")
    _same_as(service, with_exif, plain)


def test_declared_type_and_name_are_ignored(
    service: TestClient, baseline: dict[str, float]
) -> None:
    files = {"image": ("report.pdf", PNG, "application/pdf")}
    response = _post(service, files=files, data={"text": TEXT})
    assert _probabilities(response) == pytest.approx(baseline, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "\u202ecat a\u202c",  # right-to-left override
        "\u05d7\u05ea\u05d5\u05dc a cat",  # Hebrew
        "\U0001f469\u200d\U0001f4bb with a cat",  # ZWJ emoji sequence
        "\U0001f431 cat",
        "a\u00a0small\u2003cat",  # non-breaking and em spaces
    ],
)
def test_odd_but_valid_text_is_accepted(service: TestClient, text: str) -> None:
    assert _probabilities(_classify(service, text=text))


def test_text_is_nfc_normalised(service: TestClient) -> None:
    precomposed, decomposed = "a caf\u00e9 cat", "a cafe\u0301 cat"
    before = service.get("/info").json()["stats"]["text_cache"]
    first = _probabilities(_classify(service, text=precomposed))
    second = _probabilities(_classify(service, text=decomposed))
    after = service.get("/info").json()["stats"]["text_cache"]
    assert first == second
    # The decomposed text was the cached precomposed one: NFC made them equal.
    assert after["misses"] == before["misses"] + 1
    assert after["hits"] == before["hits"] + 1
