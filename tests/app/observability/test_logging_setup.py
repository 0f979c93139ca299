"""Structured logs: JSON (or text) lines, uvicorn's loggers included, each with its request id."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pythonjsonlogger.json import JsonFormatter
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from app.asgi.request_id import RequestIdMiddleware
from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine, build_engine
from app.main import create_app
from app.observability.logging_setup import HANDLER_NAME, setup_logging
from app.preprocess.decode_budget import DecodeBudget
from tests.support.app_setup import make_settings, wait_ready
from tests.support.failing_engines import broken_prepare, failing_run
from tests.support.images import encode_image, photo

PNG = encode_image(photo(40, 30))
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")
CLIENTS = ("httpx", "httpx2")  # the test clients' own loggers (Starlette's prefers httpx2)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Whatever a test does to the logging configuration is undone afterwards. The test
    clients log each request at info: the client's lines, not the service's, so they are
    silenced."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {name: logging.getLogger(name) for name in (*UVICORN, *CLIENTS)}
    state = {name: (list(lg.handlers), lg.propagate, lg.level) for name, lg in saved.items()}
    for name in CLIENTS:
        saved[name].setLevel(logging.WARNING)
    yield
    for handler in root.handlers:
        if handler.get_name() == HANDLER_NAME:
            handler.close()
    root.handlers[:], root.level = saved_root
    for name, (handlers, propagate, level) in state.items():
        saved[name].handlers[:] = handlers
        saved[name].propagate = propagate
        saved[name].level = level


@pytest.fixture
def log_stream(restored_logging: None) -> io.StringIO:
    """JSON logs at the default level (info), written to a buffer."""
    stream = io.StringIO()
    setup_logging("info", "json", access_log=False, stream=stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _one(stream: io.StringIO, message: str) -> dict[str, Any]:
    found = [r for r in records(stream) if r["message"].startswith(message)]
    assert len(found) == 1, stream.getvalue()
    return found[0]


def test_json_lines_have_the_fields(log_stream: io.StringIO) -> None:
    logging.getLogger("tests.logging").warning("hello %s", "world", extra={"batch": 3})
    (record,) = records(log_stream)
    assert datetime.fromisoformat(record.pop("timestamp")).tzinfo is not None
    assert record == {
        "level": "WARNING",
        "logger": "tests.logging",
        "message": "hello world",
        "batch": 3,
    }


def test_exceptions_are_in_the_json(log_stream: io.StringIO) -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("tests.logging").exception("it failed")
    (record,) = records(log_stream)
    assert record["level"] == "ERROR"
    assert "ValueError: bad value" in record["exc_info"]


def test_uvicorn_loggers_share_the_format(log_stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("Started", extra={"color_message": "\x1b[1mStarted"})
    logging.getLogger("uvicorn.access").info("GET / 200")  # the access log is off by default
    (record,) = records(log_stream)
    assert record["logger"] == "uvicorn.error"
    assert record["message"] == "Started"
    assert "color_message" not in record


def test_access_log_when_enabled(restored_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "json", access_log=True, stream=stream)
    logging.getLogger("uvicorn.access").info("GET / 200")
    assert [(r["logger"], r["message"]) for r in records(stream)] == [
        ("uvicorn.access", "GET / 200")
    ]


def test_setting_up_again_replaces_the_handler(restored_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "json", access_log=False, stream=first)
    setup_logging("warning", "json", access_log=False, stream=second)
    log = logging.getLogger("tests.logging")
    log.info("dropped at warning level")
    log.warning("kept")
    assert first.getvalue() == ""
    assert [r["message"] for r in records(second)] == ["kept"]
    assert [h.get_name() for h in logging.getLogger().handlers].count(HANDLER_NAME) == 1


def test_text_lines_show_the_request_id(restored_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "text", access_log=False, stream=stream)
    log = logging.getLogger("tests.text")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        log.info("inside")
        await PlainTextResponse("ok")(scope, receive, send)

    client = TestClient(RequestIdMiddleware(app, max_length=16))
    assert client.get("/", headers={"X-Request-ID": "t-1"}).headers["x-request-id"] == "t-1"
    log.info("outside")
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith(" INFO tests.text [t-1] inside")
    assert outside.endswith(" INFO tests.text [-] outside")


def _logging_prepare(settings: Settings) -> Engine:
    """Preprocessing that logs from its worker thread, as Pillow does at debug level."""
    engine = build_engine(settings)
    real_prepare = engine.pipeline.prepare

    def prepare(
        image: bytes, text: str, explain: bool = False, budget: DecodeBudget | None = None
    ) -> PreparedItem:
        worker = threading.current_thread().name
        logging.getLogger("tests.prepare").warning("preparing", extra={"worker": worker})
        return real_prepare(image, text, explain, budget)

    engine.pipeline.prepare = prepare  # type: ignore[method-assign]
    return engine


def _classify(client: TestClient, request_id: str) -> int:
    response = client.post(
        "/classify",
        files={"image": ("i.png", PNG, "image/png")},
        data={"text": "a cat"},
        headers={"X-Request-ID": request_id},
    )
    return response.status_code


@pytest.mark.parametrize("inline_pixels", [0, 1_000_000], ids=["in-the-pool", "inline"])
def test_preprocessing_logs_with_the_request_id(
    tiny_bundle_dir: Path, log_stream: io.StringIO, inline_pixels: int
) -> None:
    """In a pool thread (the context copied over) or on the event loop (small images)."""
    settings = make_settings(tiny_bundle_dir, inline_decode_max_pixels=inline_pixels)
    app = create_app(settings, engine_factory=_logging_prepare)
    with TestClient(app) as client:
        wait_ready(client)
        assert _classify(client, "pre-1") == 200
    record = _one(log_stream, "preparing")
    assert record["request_id"] == "pre-1"
    in_pool = record["worker"].startswith("fusionserve-preprocess")
    assert in_pool is (inline_pixels == 0), record["worker"]


def test_inference_failure_is_logged_with_the_request_id(
    tiny_bundle_dir: Path, log_stream: io.StringIO
) -> None:
    app = create_app(make_settings(tiny_bundle_dir), engine_factory=failing_run)
    with TestClient(app) as client:
        wait_ready(client)
        assert _classify(client, "inf-2") == 500
    record = _one(log_stream, "inference failed for one item")
    assert record["request_id"] == "inf-2"
    assert "the model broke" in record["exc_info"]


def test_unhandled_error_is_logged_with_the_request_id(
    tiny_bundle_dir: Path, log_stream: io.StringIO
) -> None:
    app = create_app(make_settings(tiny_bundle_dir), engine_factory=broken_prepare)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        assert _classify(client, "bug-1") == 500
    record = _one(log_stream, "unhandled error on POST /classify")
    assert record["request_id"] == "bug-1"
    assert record["level"] == "ERROR"


def test_nothing_is_logged_per_request_at_info(
    tiny_bundle_dir: Path, log_stream: io.StringIO
) -> None:
    with TestClient(create_app(make_settings(tiny_bundle_dir))) as client:
        wait_ready(client)
        before = log_stream.getvalue()
        assert "warm-up passed" in before  # the buffer does receive the service's logs
        assert _classify(client, "quiet-1") == 200
        no_image = {"text": (None, "no image")}  # multipart without the image field
        assert client.post("/classify", files=no_image).status_code == 422
        assert client.get("/no/such/route").status_code == 404
        for path in ("/livez", "/readyz", "/info", "/metrics"):
            assert client.get(path).status_code == 200
        assert log_stream.getvalue() == before


def test_create_app_configures_logging_only_when_asked(
    tiny_bundle_dir: Path, restored_logging: None
) -> None:
    root = logging.getLogger()
    handlers = list(root.handlers)
    create_app(make_settings(tiny_bundle_dir))
    assert root.handlers == handlers
    create_app(make_settings(tiny_bundle_dir, configure_logging=True, log_format="json"))
    (ours,) = [h for h in root.handlers if h.get_name() == HANDLER_NAME]
    assert isinstance(ours.formatter, JsonFormatter)
    assert logging.getLogger("uvicorn.error").propagate
    assert not logging.getLogger("uvicorn.access").propagate  # access_log is off by default


def test_serve_fails_start_up_with_json_lines(tmp_path: Path) -> None:
    # A real process whose bundle is missing: start-up failure must stop it with status 1 (so
    # that it gets restarted), and every line it logs, uvicorn's included, is JSON.
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--bundle", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    failure = [r for r in lines if r["level"] == "CRITICAL"]
    assert len(failure) == 1
    assert failure[0]["logger"] == "app.main"
    assert "manifest.json not found" in failure[0]["message"]
    assert any(r["logger"] == "uvicorn.error" for r in lines)
