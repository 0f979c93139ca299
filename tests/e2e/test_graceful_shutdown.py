"""SIGTERM in the middle of a burst, on a real `fusionserve serve` process.

Every request the server had accepted must get its correct 200; everything after the signal
is refused cleanly (a 503 ``shutting_down`` while the port is still open, a refused
connection once it is closed), never reset; and the process exits 0 within the grace period.
Twice: with the default settings (the port closes at once and the burst drains after it),
and with ``shutdown_delay_s``, where readiness and refusals can be seen over HTTP.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.repo_paths import SAMPLES
from tests.support.server_process import ServerProcess, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

BURST = 40
GRACE_S = 10


@dataclass
class Server:
    running: ServerProcess
    delay_s: float

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.running.process

    @property
    def base(self) -> str:
        return self.running.base

    def log_text(self) -> str:
        return self.running.log_text()

    async def wait_for_log(self, line: str, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while line not in self.log_text():
            assert time.monotonic() < deadline, f"no {line!r} in the log:\n{self.log_text()}"
            await asyncio.sleep(0.02)


@pytest.fixture(params=[0.0, 1.5], ids=["no-delay", "delay"])
def server(
    request: pytest.FixtureRequest, default_bundle: Path, tmp_path: Path
) -> Iterator[Server]:
    env = {
        # The whole burst is admitted: neither the ceiling nor the expected wait refuses any.
        "FUSIONSERVE_MAX_IN_FLIGHT": str(2 * BURST),
        "FUSIONSERVE_MAX_QUEUE_WAIT_S": str(GRACE_S),
        "FUSIONSERVE_SHUTDOWN_DELAY_S": str(request.param),
        "FUSIONSERVE_SHUTDOWN_GRACE_S": str(GRACE_S),
    }
    started = Server(start_server(default_bundle, tmp_path / "server.log", env), request.param)
    try:
        started.running.wait_ready()
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait()


def _form(sample: dict[str, Any]) -> dict[str, Any]:
    image = (SAMPLES / sample["file"]).read_bytes()
    return {"files": {"image": ("item.png", image, "image/png")}, "data": {"text": sample["text"]}}


async def _mid_burst(server: Server, done: list[Any]) -> int:
    """Wait until the server has admitted the whole burst and answered some of it; returns
    how many were in flight then. ``done`` is read before /info is asked, so that nothing is
    counted twice (and the sum only reaches BURST once every request is admitted)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as probe:
        while time.monotonic() < deadline:
            finished = len(done)
            stats = (await probe.get("/info")).json()["stats"]
            if finished and finished + stats["in_flight"] == BURST:
                in_flight: int = stats["in_flight"]
                return in_flight
            await asyncio.sleep(0.005)
    pytest.fail(f"the burst was not admitted in 30 s:\n{server.log_text()}")


async def _after_signal(server: Server, keep_alive: httpx.AsyncClient) -> None:
    """What a client sees once SIGTERM is sent."""
    sample = {"file": "bag.png", "text": "a leather bag"}
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as fresh:
        if server.delay_s:
            # The port is still open: readiness fails and new work is refused with a clean
            # 503, on a new connection and on an idle keep-alive one alike.
            ready = await fresh.get("/readyz")
            assert (ready.status_code, ready.json()["status"]) == (503, "stopping")
            for client in (fresh, keep_alive):
                refused = await client.post("/classify", **_form(sample))
                assert refused.status_code == 503
                assert refused.json()["error"]["code"] == "shutting_down"
                assert refused.headers["connection"] == "close"
        await server.wait_for_log("Shutting down")  # uvicorn logs it, then closes the port
        with pytest.raises(httpx.ConnectError):
            await fresh.get("/readyz")


async def test_sigterm_mid_burst_answers_every_accepted_request(
    server: Server, samples: list[dict[str, Any]]
) -> None:
    done: list[httpx.Response] = []
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with (
        httpx.AsyncClient(base_url=server.base, timeout=30, limits=limits) as burst,
        httpx.AsyncClient(base_url=server.base, timeout=10) as keep_alive,
    ):
        warm = await keep_alive.post("/classify", **_form(samples[0]))  # opens a connection
        assert warm.status_code == 200

        async def send(sample: dict[str, Any]) -> httpx.Response:
            response = await burst.post("/classify", **_form(sample))
            done.append(response)
            return response

        expected = [samples[i % len(samples)] for i in range(BURST)]
        tasks = [asyncio.create_task(send(sample)) for sample in expected]
        in_flight = await _mid_burst(server, done)
        assert in_flight > 0, "the burst was over before SIGTERM; make it heavier"
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await _after_signal(server, keep_alive)
        # Raises on any transport error: an accepted request reset or dropped fails here.
        responses = await asyncio.gather(*tasks)

    for sample, response in zip(expected, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["label"] == sample["label"]
    limit_s = server.delay_s + GRACE_S
    code = await asyncio.to_thread(server.process.wait, limit_s)
    assert time.monotonic() - signalled < limit_s
    log = server.log_text()
    assert code == 0, log
    assert "SIGTERM: readiness is 503" in log
    assert "Application shutdown complete" in log
    assert "timeout graceful shutdown exceeded" not in log
