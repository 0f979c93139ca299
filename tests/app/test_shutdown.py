"""Stopping: the state switch the signal handler makes, and the server's drain delay.
(The whole thing on a real process, SIGTERM included: tests/e2e/test_graceful_shutdown.py.)"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import uvicorn

from app.config.settings import Settings
from app.core.lifecycle import Lifecycle, Status
from app.main import create_app
from app.server import DrainingServer, uvicorn_config
from tests.support.app_setup import make_settings
from tests.support.gated_service import Gate, gated_app, numbered_form, ready_client

pytestmark = pytest.mark.anyio


async def test_stop_accepting_fails_readiness_and_refuses_new_work(
    tiny_bundle_dir: Path, gate: Gate
) -> None:
    app = gated_app(make_settings(tiny_bundle_dir), gate)
    async for client in ready_client(app):
        gate.hold()
        files, data = numbered_form(0)
        accepted = asyncio.create_task(client.post("/classify", files=files, data=data))
        await gate.wait_entered()

        app.state.core.lifecycle.stop_accepting()  # what SIGTERM does first

        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (503, "stopping")
        assert (await client.get("/livez")).status_code == 200
        for refused in (
            await client.post("/classify", files=files, data=data),
            await client.post(
                "/classify/batch", files={"images": files["image"]}, data={"texts": "x"}
            ),
            await client.get("/info"),
        ):
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "shutting_down"
            assert refused.headers["connection"] == "close"
        gate.open.set()
        answered = await accepted  # accepted before the switch: answered as usual
        assert answered.status_code == 200
        assert answered.json()["label"]


def test_a_failed_service_stays_failed() -> None:
    lifecycle = Lifecycle(status=Status.FAILED, error="bad bundle")
    lifecycle.stop_accepting()
    assert lifecycle.status is Status.FAILED
    assert not lifecycle.accepting


def _server(delay_s: float, stopped: list[str]) -> DrainingServer:
    config = uvicorn.Config(app=lambda *_: None, timeout_graceful_shutdown=5)
    return DrainingServer(
        config, stop_accepting=lambda: stopped.append("stop"), drain_delay_s=delay_s
    )


async def test_signal_stops_accepting_before_anything_else() -> None:
    stopped: list[str] = []
    server = _server(0.0, stopped)
    assert not await server.on_tick(1)
    server.handle_exit(signal.SIGTERM, None)
    assert stopped == ["stop"]
    assert server.should_exit
    server.handle_exit(signal.SIGTERM, None)  # a repeated signal does not switch again
    assert stopped == ["stop"]
    assert await server.on_tick(2)  # no delay: uvicorn closes the port now


async def test_drain_delay_keeps_the_port_open_until_a_second_ctrl_c() -> None:
    stopped: list[str] = []
    server = _server(3600.0, stopped)
    server.handle_exit(signal.SIGINT, None)
    assert stopped == ["stop"]
    assert not await server.on_tick(1)  # still listening: the delay has not passed
    assert not server.force_exit
    server.handle_exit(signal.SIGINT, None)  # a second Ctrl+C: stop now
    assert server.force_exit
    assert await server.on_tick(2)


async def test_stop_without_a_signal_is_plain_uvicorn() -> None:
    # The start-up-failure hook sets should_exit directly: no delay, no state switch.
    stopped: list[str] = []
    server = _server(3600.0, stopped)
    server.should_exit = True
    assert await server.on_tick(1)
    assert stopped == []


async def test_client_sees_clean_refusal_through_asgi(tiny_bundle_dir: Path) -> None:
    # The gate refuses a stopping service before parsing: junk is not parsed, still a 503.
    app = create_app(make_settings(tiny_bundle_dir))
    async for client in ready_client(app):
        app.state.core.lifecycle.stop_accepting()
        junk = {"Content-Type": "multipart/form-data; boundary=x"}
        refused = await client.post("/classify", content=b"not multipart", headers=junk)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"


def test_uvicorn_reads_proxy_headers_only_from_configured_proxies() -> None:
    config = uvicorn_config(lambda *_: None, Settings(access_log=False))  # type: ignore[arg-type]
    config.load()
    assert (config.proxy_headers, config.server_header, config.access_log) == (False, False, False)
    trusted = uvicorn_config(
        lambda *_: None,  # type: ignore[arg-type]
        Settings(forwarded_allow_ips="10.0.0.0/8", access_log=True),
    )
    assert (trusted.proxy_headers, trusted.forwarded_allow_ips, trusted.access_log) == (
        True,
        "10.0.0.0/8",
        True,
    )
