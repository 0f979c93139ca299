"""The demo page at ``/``: how it is served, and what it does in a real browser.

The fast tests use the TestClient. The browser tests drive Debian's Chromium (package
``chromium``; never ``playwright install``) with Playwright against a real uvicorn server on
a free port, and compare what the page shows with what ``/classify`` answers to the very
body the browser posted (re-sent with httpx). The screenshot is checked with Pillow: the bars'
coloured pixel runs and the image preview.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from app.config.settings import Settings
from app.main import create_app
from app.rest.demo import CONTENT_SECURITY_POLICY, DEMO_PATHS
from tests.support.app_setup import make_settings, wait_ready
from tests.support.images import encode_image, photo
from tests.support.repo_paths import DEFAULT_BUNDLE, ROOT, SAMPLES
from tests.support.tiny_bundle import (
    LABELS,
    make_tiny_bundle_with_head,
    make_tiny_multilabel_bundle,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, Route

STATIC = ROOT / "app" / "static"
KEY = "demo-test-key"
TEXT = "a small red cat"
# The bars' fill colour (--accent in demo.css), as the screenshot shows it.
ACCENT = np.array([0x25, 0x63, 0xEB])
# Write the end-to-end screenshot to docs/img/demo.png too (for the README).
WRITE_DOCS_SCREENSHOT = "FUSIONSERVE_WRITE_DEMO_SCREENSHOT"


@pytest.fixture(scope="module")
def optional_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny head that accepts either modality missing, so explain works; temperature 3
    spreads the probabilities so that every bar has a visible width."""
    root = tmp_path_factory.mktemp("demo-bundle")
    make_tiny_bundle_with_head(root, presence=True, temperature=3.0)
    return root


# --- Served by the app -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_client(tiny_bundle_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tiny_bundle_dir))) as client:
        yield client


def test_page_is_html_with_a_strict_csp(demo_client: TestClient) -> None:
    response = demo_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["style-src"] == "'self'"
    assert directives["img-src"] == "'self' blob:"  # the chosen image's preview
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert "<title>FusionServe demo</title>" in response.text


def test_page_has_no_inline_code_and_nothing_from_outside(demo_client: TestClient) -> None:
    html = demo_client.get("/").text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts == [(' src="/demo/demo.js" defer', "")]
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    for path in DEMO_PATHS:
        text = demo_client.get(path).text
        for outside in ("http://", "https://", "url(", "@import", "eval(", "innerHTML"):
            assert outside not in text, (path, outside)


def test_every_file_the_page_links_is_served(demo_client: TestClient) -> None:
    html = demo_client.get("/").text
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(linked) == ["/demo/demo.css", "/demo/demo.js"]
    types = {"/demo/demo.js": "text/javascript", "/demo/demo.css": "text/css"}
    for path in linked:
        response = demo_client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == f"{types[path]}; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-cache"
        assert response.content == (STATIC / path.rsplit("/", 1)[1]).read_bytes()


def test_unchanged_files_are_revalidated_with_304(demo_client: TestClient) -> None:
    for path in DEMO_PATHS:
        first = demo_client.get(path)
        etag = first.headers["etag"]
        again = demo_client.get(path, headers={"If-None-Match": f'W/"other", {etag}'})
        assert again.status_code == 304, path
        assert again.content == b""
        assert again.headers["etag"] == etag
        changed = demo_client.get(path, headers={"If-None-Match": '"other"'})
        assert changed.status_code == 200
        assert changed.content == first.content


def test_demo_disabled_is_404(tiny_bundle_dir: Path) -> None:
    with TestClient(create_app(make_settings(tiny_bundle_dir, demo_enabled=False))) as client:
        for path in DEMO_PATHS:
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"


def test_page_is_open_without_a_key_when_auth_is_on(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, api_keys=[KEY])
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        for path in DEMO_PATHS:
            assert client.get(path).status_code == 200, path
        assert client.get("/info").status_code == 401
        assert client.post("/classify", data={"text": TEXT}).status_code == 401
        headers = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/info", headers=headers).status_code == 200
        # The page is not in the API's schema, so it is not documented as needing a key.
        schema = client.get("/openapi.json", headers=headers).json()
        assert "/" not in schema["paths"]
        assert "/demo/demo.js" not in schema["paths"]


def test_demo_disabled_leaves_the_page_protected_too(tiny_bundle_dir: Path) -> None:
    settings = make_settings(tiny_bundle_dir, api_keys=[KEY], demo_enabled=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/").status_code == 401


def test_installed_package_carries_the_page(tmp_path: Path) -> None:
    """A wheel built from what the Dockerfile copies (pyproject, README, app/) holds every
    file of app/static: a non-editable install serves the page."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*command, "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        env=os.environ | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (wheel,) = (tmp_path / "dist").glob("fusionserve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    static = {f"app/static/{p.name}" for p in STATIC.iterdir() if p.is_file()}
    assert static == {"app/static/index.html", "app/static/demo.js", "app/static/demo.css"}
    assert static <= names


# --- In a browser ------------------------------------------------------------------------


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    executable = _chromium()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    # Chromium refuses to start its sandbox as root (CI runs as root).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        launched.close()


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn server for ``settings`` in a thread, on a free port, once ready."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "the server thread ended"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {KEY}"}
        while httpx.get(f"{base}/readyz", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.02)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def optional_server(optional_bundle: Path) -> Iterator[str]:
    with live_server(make_settings(optional_bundle)) as base:
        yield base


@pytest.fixture(scope="module")
def plain_server(tiny_bundle_dir: Path) -> Iterator[str]:
    """A head that needs both modalities (so no explain either)."""
    with live_server(make_settings(tiny_bundle_dir)) as base:
        yield base


@pytest.fixture(scope="module")
def secured_server(optional_bundle: Path) -> Iterator[str]:
    with live_server(make_settings(optional_bundle, api_keys=[KEY])) as base:
        yield base


@dataclass
class Demo:
    """One browser tab on the demo page, with what its console said."""

    page: Page
    base: str
    console: list[str] = field(default_factory=list)
    image: Path | None = None  # the file chosen in the form

    def replay(self, request: Request, leave_out: tuple[str, ...] = ()) -> httpx.Response:
        return replay(self.base, request, self.image, leave_out)

    def clear_image(self) -> None:
        self.page.set_input_files("#image", [])
        self.image = None

    def open(self) -> None:
        response = self.page.goto(self.base + "/")
        assert response is not None
        assert response.status == 200
        self.page.wait_for_selector("body[data-state=ready]", state="attached")

    def classify(self, image: Path | None, text: str | None, *, requests: int = 1) -> list[Request]:
        """Fill in the form, click Classify; the POSTs to /classify, once the page shows
        their outcome."""
        if image is not None:
            self.page.set_input_files("#image", image)
            self.image = image
        if text is not None:
            self.page.fill("#text", text)
        posted: list[Request] = []

        def note(request: Request) -> None:
            if request.method == "POST" and request.url.endswith("/classify"):
                posted.append(request)

        self.page.on("request", note)
        self.page.click("#submit")
        self.page.wait_for_selector("#submit:enabled")
        self.page.wait_for_selector("#result:not([hidden]), #error:not([hidden])")
        self.page.remove_listener("request", note)
        assert len(posted) == requests
        return posted

    def visible(self, selector: str) -> bool:
        return self.page.locator(selector).is_visible()

    def texts(self, selector: str) -> list[str]:
        return [t.strip() for t in self.page.locator(selector).all_inner_texts()]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Callable[[str], Demo]]:
    """Opens the demo page of a server in a fresh context (its own sessionStorage)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    # Chromium reports no post data at all for a form with a file unless the request is
    # intercepted (and then the file's content is left out): let every POST /classify
    # through an unchanging route, so that the posted fields can be read.
    context.route("**/classify", lambda route: route.continue_())
    demos: list[Demo] = []

    def open_demo(base: str) -> Demo:
        page = context.new_page()
        demo = Demo(page, base)
        page.on("console", lambda m: demo.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: demo.console.append(f"pageerror: {e}"))
        demo.open()
        demos.append(demo)
        return demo

    yield open_demo
    context.close()
    for demo in demos:
        # Chromium logs every 4xx fetch as "Failed to load resource"; nothing else is allowed
        # (a CSP violation or a script error would show here).
        unexpected = [m for m in demo.console if "Failed to load resource" not in m]
        assert unexpected == []


def form_fields(request: Request) -> dict[str, str]:
    """The multipart form the browser posted, each field sent once: name -> text, and for a
    file "file:<its name>" (Chromium leaves the content of uploaded files out of the post
    data it reports; the server gets it, as the answers compared with ``replay`` show)."""
    body = request.post_data_buffer
    assert body is not None
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        assert name not in fields, f"{name} sent twice"
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        fields[name] = payload.decode() if filename is None else f"file:{filename}"
    return fields


def replay(
    base: str, request: Request, image: Path | None, leave_out: tuple[str, ...] = ()
) -> httpx.Response:
    """/classify's answer to the form the browser posted (less the fields ``leave_out``),
    with ``image`` as its file, sent with the browser's key if it had one."""
    fields = {k: v for k, v in form_fields(request).items() if k not in leave_out}
    # Every field as a part, so that the body is multipart even without a file.
    parts: dict[str, tuple[str | None, str | bytes]] = {k: (None, v) for k, v in fields.items()}
    if "image" in fields:
        assert image is not None
        assert fields["image"] == f"file:{image.name}"
        parts["image"] = (image.name, image.read_bytes())
    headers = {}
    if "authorization" in request.headers:
        headers["Authorization"] = request.headers["authorization"]
    return httpx.post(f"{base}/classify", files=parts, headers=headers)


def percent(p: float) -> str:
    return f"{p * 100:.1f}%"


def points(delta: float) -> str:
    return f"{delta * 100:+.1f} pp"


def assert_shows_result(demo: Demo, expected: dict[str, Any]) -> None:
    """The page shows ``expected`` (a /classify answer): label, bars, contributions, timing."""
    assert demo.visible("#result")
    assert not demo.visible("#error")
    assert demo.texts("#label") == [expected["label"]]
    assert demo.texts("#probability") == [percent(expected["probability"])]
    predictions = expected["predictions"]
    assert demo.texts("#bars .bar-label") == [p["label"] for p in predictions]
    assert demo.texts("#bars .bar-value") == [percent(p["probability"]) for p in predictions]
    for bar, prediction in zip(demo.page.locator("#bars .bar").all(), predictions, strict=True):
        track = bar.locator(".bar-track").bounding_box()
        fill = bar.locator(".bar-fill").bounding_box()
        assert track is not None
        assert fill is not None
        assert track["width"] > 200
        assert fill["x"] == pytest.approx(track["x"])
        assert fill["width"] == pytest.approx(prediction["probability"] * track["width"], abs=0.5)
    explanation = expected["explanation"]
    assert demo.visible("#contributions") == (explanation is not None)
    rows = [
        [c["label"], *(percent(c[k]) for k in ("probability", "without_image", "without_text"))]
        + [points(c["image_contribution"]), points(c["text_contribution"])]
        for c in (explanation["top"] if explanation else [])
    ]
    shown = [
        [cell.inner_text().strip() for cell in row.locator("td").all()]
        for row in demo.page.locator("#contribution-rows tr").all()
    ]
    assert shown == rows
    missing = expected["missing_modality"]
    assert demo.visible("#missing") == (missing is not None)
    # The replayed request has its own timing: the format is what can be compared.
    timing = demo.texts("#timing")[0]
    assert re.fullmatch(
        rf"Server \d+\.\d ms \(preprocess \d+\.\d ms, inference \d+\.\d ms\) · "
        rf"round trip \d+\.\d ms · {re.escape(expected['bundle']['name'])} \S+",
        timing,
    ), timing


def assert_timing_is_the_answers(demo: Demo, request: Request) -> None:
    """The timing line shows the server's timing of the answer the page got (to 0.1 ms)."""
    response = request.response()
    assert response is not None
    timing = response.json()["timing"]
    shown = re.findall(r"(\d+\.\d) ms", demo.texts("#timing")[0])
    keys = ("total_ms", "preprocess_ms", "inference_ms")
    assert [float(v) for v in shown[:3]] == pytest.approx([timing[k] for k in keys], abs=0.051)


def assert_shown_error(demo: Demo, request: Request, expected: httpx.Response) -> None:
    error = expected.json()["error"]
    assert demo.visible("#error")
    assert not demo.visible("#result")
    assert demo.texts("#error-title") == [f"{expected.status_code} {error['code']}"]
    assert demo.texts("#error-message") == [error["message"]]
    response = request.response()
    assert response is not None
    assert response.status == expected.status_code
    request_id = response.headers["x-request-id"]
    assert demo.texts("#error-request") == [f"Request id: {request_id}"]


@dataclass
class Shot:
    """A screenshot of the page, as RGB pixels (CSS pixels: device_scale_factor is 1)."""

    pixels: np.ndarray

    @classmethod
    def take(cls, page: Page, path: Path) -> Shot:
        page.screenshot(path=path)
        with Image.open(path) as image:
            return cls(np.asarray(image.convert("RGB")).astype(np.int16))

    def accent_run(self, box: dict[str, float]) -> int:
        """Accent-coloured pixels along the middle row of ``box``: one run, from its left
        edge (the first pixel may be blended when the box starts between two pixels)."""
        y = round(box["y"] + box["height"] / 2)
        row = self.pixels[y, math.floor(box["x"]) : math.ceil(box["x"] + box["width"])]
        (found,) = np.nonzero(np.all(np.abs(row - ACCENT) <= 8, axis=-1))
        if len(found) == 0:
            return 0
        assert found[-1] - found[0] + 1 == len(found), f"not one run: {found}"
        assert found[0] <= 1, f"does not start at the left edge: {found}"
        return len(found)

    def region(self, box: dict[str, float], inset: int) -> np.ndarray:
        x0, y0 = math.ceil(box["x"]) + inset, math.ceil(box["y"]) + inset
        x1 = math.floor(box["x"] + box["width"]) - inset
        y1 = math.floor(box["y"] + box["height"]) - inset
        return self.pixels[y0:y1, x0:x1]


def assert_screenshot(demo: Demo, path: Path, expected: dict[str, Any], source: Path) -> None:
    """The pixels say the same as the DOM: bar lengths proportional to the probabilities,
    and the preview shows the chosen image."""
    shot = Shot.take(demo.page, path)
    tracks = [b.bounding_box() for b in demo.page.locator("#bars .bar-track").all()]
    for box, prediction in zip(tracks, expected["predictions"], strict=True):
        assert box is not None
        assert shot.accent_run(box) == pytest.approx(
            prediction["probability"] * box["width"], abs=1.5
        )
    preview = demo.page.locator("#preview").bounding_box()
    assert preview is not None
    shown = shot.region(preview, inset=2)  # inside the 1 px border
    assert shown.std() > 10  # not blank
    with Image.open(source) as original:
        scaled = original.convert("RGB").resize(
            (shown.shape[1], shown.shape[0]), Image.Resampling.BILINEAR
        )

    # Compared on a coarse grid, where smoothing differences average out.
    def coarse(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a.astype(np.uint8)).resize((12, 12), Image.BOX), float)

    assert np.abs(coarse(shown) - coarse(np.asarray(scaled))).mean() < 12


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-files") / "photo.png"
    path.write_bytes(encode_image(photo(240, 180, seed=5), "PNG"))
    return path


def test_image_and_text_show_bars_contributions_and_preview(
    tab: Callable[[str], Demo], optional_server: str, photo_file: Path, tmp_path: Path
) -> None:
    demo = tab(optional_server)
    assert not demo.visible("#model-row")  # GET /v1/models: 404 or one model
    assert not demo.visible("#key-panel")
    assert demo.texts("#bundle") == ["tiny-test-bundle 0.0.1"]  # from /info
    (request,) = demo.classify(photo_file, TEXT)
    fields = form_fields(request)
    assert fields == {"image": "file:photo.png", "text": TEXT, "top_k": "5", "explain": "true"}
    expected = demo.replay(request).json()
    assert [p["label"] for p in expected["predictions"]] != []
    assert sorted(p["label"] for p in expected["predictions"]) == sorted(LABELS)
    assert expected["explanation"] is not None
    assert_shows_result(demo, expected)
    assert_timing_is_the_answers(demo, request)
    assert demo.visible("#preview")
    assert_screenshot(demo, tmp_path / "demo.png", expected, photo_file)


@pytest.mark.parametrize("given", ["text", "image"])
def test_one_modality_is_sent_alone_without_explain(
    tab: Callable[[str], Demo], optional_server: str, photo_file: Path, given: str
) -> None:
    demo = tab(optional_server)
    image, text = (None, TEXT) if given == "text" else (photo_file, None)
    (request,) = demo.classify(image, text)
    fields = form_fields(request)
    assert set(fields) == {given, "top_k"}
    expected = demo.replay(request).json()
    assert expected["missing_modality"] == ("image" if given == "text" else "text")
    assert_shows_result(demo, expected)
    assert demo.texts("#missing") == [
        f"Answered from the {given} alone (no {expected['missing_modality']} sent)."
    ]


def test_a_file_that_is_not_an_image_shows_the_services_error(
    tab: Callable[[str], Demo], optional_server: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture at all\n")
    demo = tab(optional_server)
    (request,) = demo.classify(notes, TEXT)
    expected = demo.replay(request)
    assert expected.status_code == 415
    assert_shown_error(demo, request, expected)
    assert not demo.visible("#preview")


def test_a_head_that_needs_both_gets_no_explain_and_its_error_is_shown(
    tab: Callable[[str], Demo], plain_server: str, photo_file: Path
) -> None:
    demo = tab(plain_server)
    (request,) = demo.classify(photo_file, TEXT)
    assert "explain" not in form_fields(request)  # /info: the head cannot leave one out
    assert_shows_result(demo, demo.replay(request).json())
    demo.clear_image()
    (request,) = demo.classify(None, None)
    assert set(form_fields(request)) == {"text", "top_k"}
    expected = demo.replay(request)
    assert expected.json()["error"]["code"] == "modality_required"
    assert_shown_error(demo, request, expected)


def test_explain_is_retried_without_when_the_service_did_not_say(
    tab: Callable[[str], Demo], plain_server: str, photo_file: Path
) -> None:
    demo = tab(plain_server)

    def loading(route: Route) -> None:
        route.fulfill(status=503, json={"error": {"code": "not_ready", "message": "loading"}})

    demo.page.route("**/v1/models", loading)
    demo.page.route("**/info", loading)
    demo.open()  # again, with neither /v1/models nor /info answering
    first, second = demo.classify(photo_file, TEXT, requests=2)
    assert form_fields(first)["explain"] == "true"
    assert demo.replay(first).json()["error"]["code"] == "explain_unsupported"
    assert "explain" not in form_fields(second)
    assert_shows_result(demo, demo.replay(second).json())


def test_api_key_is_asked_for_kept_in_the_tab_and_sent(
    tab: Callable[[str], Demo], secured_server: str, photo_file: Path
) -> None:
    demo = tab(secured_server)  # the page itself needs no key
    assert demo.visible("#key-panel")  # /v1/models or /info answered 401
    (refused,) = demo.classify(photo_file, TEXT)
    assert "authorization" not in refused.headers
    assert_shown_error(demo, refused, demo.replay(refused))
    demo.page.fill("#api-key", KEY)
    demo.page.click("#save-key")
    assert demo.page.evaluate("sessionStorage.getItem('fusionserve.apiKey')") == KEY
    assert demo.page.evaluate("localStorage.length") == 0
    (request,) = demo.classify(None, None)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    expected = demo.replay(request).json()
    assert expected["explanation"] is not None
    assert_shows_result(demo, expected)
    assert KEY not in demo.page.content()


def fake_models(*models: dict[str, Any]) -> Callable[[Route], None]:
    def answer(route: Route) -> None:
        route.fulfill(status=200, json={"models": list(models)})

    return answer


def model(name: str, *, default: bool, ready: bool = True, explain: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0.0",
        "ready": ready,
        "default": default,
        "labels": LABELS,
        "accepts_image_only": explain,
        "accepts_text_only": explain,
        "explain": explain,
    }


def test_models_are_offered_and_the_chosen_one_is_posted(
    tab: Callable[[str], Demo], optional_server: str, photo_file: Path
) -> None:
    """GET /v1/models (faked, to list a bundle that is not ready) lists two: a selector
    appears and the form carries model=<name>. The /classify answers come from the real
    service, asked without the model field (it serves one bundle)."""
    demo = tab(optional_server)
    demo.page.route(
        "**/v1/models",
        fake_models(
            model("tiny-test-bundle", default=True),
            model("other-bundle", default=False, ready=False, explain=False),
        ),
    )

    def forward(route: Route) -> None:
        assert "model" in form_fields(route.request)
        # The same form without the model field (this service does not take it yet).
        real = demo.replay(route.request, leave_out=("model",))
        route.fulfill(status=real.status_code, json=real.json())

    demo.page.route("**/classify", forward)
    demo.open()
    assert demo.visible("#model-row")
    options = demo.page.locator("#model option")
    assert options.all_inner_texts() == [
        "tiny-test-bundle 1.0.0",
        "other-bundle 1.0.0 (not ready)",
    ]
    assert demo.page.input_value("#model") == "tiny-test-bundle"
    demo.page.select_option("#model", "other-bundle")
    assert demo.texts("#bundle") == ["other-bundle 1.0.0"]
    (request,) = demo.classify(photo_file, TEXT)
    fields = form_fields(request)
    assert fields["model"] == "other-bundle"
    assert "explain" not in fields  # that model says it cannot explain
    assert demo.visible("#result")
    assert not demo.visible("#contributions")
    demo.page.select_option("#model", "tiny-test-bundle")
    (request,) = demo.classify(None, None)
    fields = form_fields(request)
    assert fields["model"] == "tiny-test-bundle"
    assert fields["explain"] == "true"
    assert demo.visible("#contributions")


@pytest.fixture(scope="module")
def two_bundle_server(
    optional_bundle: Path, tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The optional-modality bundle (default) and the plain one, renamed, side by side."""
    plain = Path(shutil.copytree(tiny_bundle_dir, tmp_path_factory.mktemp("plain") / "b"))
    manifest = json.loads((plain / "manifest.json").read_text())
    (plain / "manifest.json").write_text(json.dumps(manifest | {"name": "plain-bundle"}))
    settings = make_settings(optional_bundle, bundles=[optional_bundle, plain])
    with live_server(settings) as base:
        yield base


def test_a_real_second_bundle_is_chosen_and_answers(
    tab: Callable[[str], Demo], two_bundle_server: str, photo_file: Path
) -> None:
    demo = tab(two_bundle_server)
    assert demo.visible("#model-row")
    options = demo.page.locator("#model option")
    assert options.all_inner_texts() == ["tiny-test-bundle 0.0.1", "plain-bundle 0.0.1"]
    demo.page.select_option("#model", "plain-bundle")
    (request,) = demo.classify(photo_file, TEXT)
    fields = form_fields(request)
    assert fields["model"] == "plain-bundle"
    assert "explain" not in fields  # /v1/models says its head cannot leave a modality out
    expected = demo.replay(request).json()
    assert expected["bundle"]["name"] == "plain-bundle"
    assert_shows_result(demo, expected)
    demo.page.select_option("#model", "tiny-test-bundle")
    (request,) = demo.classify(None, None)
    fields = form_fields(request)
    assert (fields["model"], fields["explain"]) == ("tiny-test-bundle", "true")
    expected = demo.replay(request).json()
    assert expected["bundle"]["name"] == "tiny-test-bundle"
    assert_shows_result(demo, expected)


@pytest.fixture(scope="module")
def multilabel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A multilabel bundle whose thresholds put some labels over and some under."""
    root = tmp_path_factory.mktemp("demo-multilabel")
    make_tiny_multilabel_bundle(root, temperature=3.0)
    with live_server(make_settings(root)) as base:
        yield base


def test_a_multilabel_answer_shows_its_labels_and_each_threshold(
    tab: Callable[[str], Demo], multilabel_server: str, photo_file: Path
) -> None:
    demo = tab(multilabel_server)
    (request,) = demo.classify(photo_file, TEXT)
    expected = demo.replay(request).json()
    assert expected["task"] == "multilabel"
    labels = expected["labels"]
    assert demo.texts("#label") == [", ".join(labels) if labels else "No label"]
    predictions = expected["predictions"]
    assert demo.texts("#bars .bar-label") == [p["label"] for p in predictions]
    assert demo.texts("#bars .bar-value") == [percent(p["probability"]) for p in predictions]
    bars = demo.page.locator("#bars .bar").all()
    for bar, prediction in zip(bars, predictions, strict=True):
        track = bar.locator(".bar-track").bounding_box()
        mark = bar.locator(".bar-threshold").bounding_box()
        assert track is not None
        assert mark is not None
        centre = mark["x"] + mark["width"] / 2
        assert centre == pytest.approx(track["x"] + prediction["threshold"] * track["width"], abs=1)
        predicted = "predicted" in (bar.get_attribute("class") or "").split()
        assert predicted == (prediction["label"] in labels)
        assert predicted == (prediction["probability"] >= prediction["threshold"])
    # The explanation covers every predicted label.
    explained = [
        row.get_attribute("data-label") for row in demo.page.locator("#contribution-rows tr").all()
    ]
    assert set(labels) <= set(explained)


def test_one_listed_model_shows_no_selector(
    tab: Callable[[str], Demo], optional_server: str
) -> None:
    demo = tab(optional_server)
    demo.page.route("**/v1/models", fake_models(model("only-bundle", default=True)))
    demo.open()
    assert not demo.visible("#model-row")
    assert demo.texts("#bundle") == ["only-bundle 1.0.0"]
    (request,) = demo.classify(None, TEXT)
    assert "model" not in form_fields(request)


@pytest.mark.e2e
def test_default_bundle_end_to_end(tab: Callable[[str], Demo], tmp_path: Path) -> None:
    """The real default bundle and a Fashion-MNIST sample: the README's screenshot."""
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.fail("the default bundle is not built: run `fusionserve build-default-bundle`")
    sample = json.loads((SAMPLES / "samples.json").read_text())[3]
    assert sample["label"] == "Sneaker"
    image = SAMPLES / sample["file"]
    with live_server(make_settings(DEFAULT_BUNDLE, intra_op_threads=2)) as base:
        demo = tab(base)
        (request,) = demo.classify(image, sample["text"])
        expected = demo.replay(request).json()
    assert expected["label"] == "Sneaker"
    assert len(expected["predictions"]) == 5
    assert_shows_result(demo, expected)
    path = tmp_path / "demo.png"
    assert_screenshot(demo, path, expected, image)
    if os.environ.get(WRITE_DOCS_SCREENSHOT, "") not in ("", "0"):
        docs = ROOT / "docs" / "img" / "demo.png"
        with Image.open(path) as shot:
            # Without the empty viewport below the page's content.
            content = ImageOps.invert(shot.convert("RGB")).getbbox()
            assert content is not None
            shot.crop((0, 0, shot.width, min(shot.height, content[3] + 24))).save(
                docs, optimize=True
            )
        assert docs.stat().st_size < 200_000


def test_screenshot_helper_measures_runs() -> None:
    """The pixel-run check itself: a known bar of 37 accent pixels in a 100 px track."""
    pixels = np.full((20, 120, 3), 229, dtype=np.int16)
    pixels[5:15, 10:47] = ACCENT
    shot = Shot(pixels)
    track = {"x": 10, "y": 5, "width": 100, "height": 10}
    assert shot.accent_run(track) == 37
    assert shot.accent_run(track | {"x": 9.5}) == 37  # a blended first pixel
    assert shot.accent_run(track | {"x": 47}) == 0
    with pytest.raises(AssertionError, match="left edge"):
        shot.accent_run(track | {"x": 5})
    pixels[10, 60] = ACCENT  # a stray pixel after the run is not a bar
    with pytest.raises(AssertionError, match="not one run"):
        shot.accent_run(track)
