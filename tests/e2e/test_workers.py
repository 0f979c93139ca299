"""Two worker processes on one port (`FUSIONSERVE_WORKERS=2`), on the default bundle: both
serve, the pod is ready only when both are, /metrics counts the pod's requests whichever
worker answers the scrape, a worker that dies is started again, and SIGTERM drains both
without losing an accepted request; on a tiny bundle, a reload reaches both workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.repo_paths import SAMPLES
from tests.support.server_process import ServerProcess, start_server, workers_of
from tests.support.tiny_bundle import make_tiny_bundle, manifest_dict, write_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

BURST = 24
GRACE_S = 15


@pytest.fixture
def pod(default_bundle: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "FUSIONSERVE_WORKERS": "2",
        # The whole burst is admitted by the pod: neither the ceiling nor the wait refuses.
        "FUSIONSERVE_MAX_IN_FLIGHT": str(4 * BURST),
        "FUSIONSERVE_MAX_QUEUE_WAIT_S": str(GRACE_S),
        "FUSIONSERVE_SHUTDOWN_DELAY_S": "0.5",
        "FUSIONSERVE_SHUTDOWN_GRACE_S": str(GRACE_S),
    }
    started = start_server(default_bundle, tmp_path / "pod.log", env)
    try:
        started.wait_ready()
        yield started
    finally:
        if started.process.poll() is None:
            workers = workers_of(started.process.pid)
            started.process.kill()
            started.process.wait()
            for worker in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker, signal.SIGKILL)


async def pod_counts(base: str) -> set[tuple[float, float]]:
    """(/classify 200s, predictions) in the pod's metrics, from scrapes on fresh connections
    (answered by either worker)."""
    seen = set()
    for _ in range(6):
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            text = (await client.get("/metrics")).text
        answered = [
            line.rpartition(" ")[2]
            for line in text.splitlines()
            if line.startswith("fusionserve_http_requests_total{")
            and 'route="/classify"' in line
            and 'status="200"' in line
        ]
        predicted = re.findall(r"fusionserve_predictions_total\{[^}]*\} (\S+)", text)
        seen.add((sum(map(float, answered)), sum(map(float, predicted))))
    return seen


def _form(sample: dict[str, Any]) -> dict[str, Any]:
    image = (SAMPLES / sample["file"]).read_bytes()
    return {"files": {"image": ("item.png", image, "image/png")}, "data": {"text": sample["text"]}}


async def _burst(
    base: str, samples: list[dict[str, Any]], done: list[httpx.Response]
) -> list[asyncio.Task[httpx.Response]]:
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    client = httpx.AsyncClient(base_url=base, timeout=60, limits=limits)

    async def send(sample: dict[str, Any]) -> httpx.Response:
        response = await client.post("/classify", **_form(sample))
        done.append(response)
        return response

    tasks = [asyncio.create_task(send(samples[i % len(samples)])) for i in range(BURST)]
    asyncio.gather(*tasks, return_exceptions=True).add_done_callback(
        lambda _: asyncio.ensure_future(client.aclose())
    )
    return tasks


async def test_both_workers_serve_and_a_dead_one_is_replaced(
    pod: ServerProcess, samples: list[dict[str, Any]]
) -> None:
    workers = workers_of(pod.process.pid)
    assert len(workers) == 2, pod.log_text()
    done: list[httpx.Response] = []
    responses = await asyncio.gather(*await _burst(pod.base, samples, done))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.json()["label"] == samples[i % len(samples)]["label"]
    assert await pod_counts(pod.base) == {(BURST, BURST)}
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while (current := workers_of(pod.process.pid)) == workers or len(current) < 2:
        assert time.monotonic() < deadline, pod.log_text()
        await asyncio.sleep(0.05)
    assert workers[0] not in current
    assert workers[1] in current
    await asyncio.to_thread(pod.wait_ready)
    assert "worker 0 (pid" in pod.log_text()
    async with httpx.AsyncClient(base_url=pod.base, timeout=30) as client:
        answered = await client.post("/classify", **_form(samples[0]))
        assert answered.status_code == 200
    # The dead worker's counts are kept: the pod's counters never go back.
    assert await pod_counts(pod.base) == {(BURST + 1, BURST + 1)}


async def test_sigterm_drains_every_worker(
    pod: ServerProcess, samples: list[dict[str, Any]]
) -> None:
    workers = workers_of(pod.process.pid)
    done: list[httpx.Response] = []
    tasks = await _burst(pod.base, samples, done)
    deadline = time.monotonic() + 60
    while len(done) < 4:  # the burst is under way: every request of it has been sent
        assert time.monotonic() < deadline, pod.log_text()
        await asyncio.sleep(0.005)
    assert len(done) < BURST, "the burst was over before SIGTERM; make it heavier"
    signalled = time.monotonic()
    pod.process.send_signal(signal.SIGTERM)
    # Raises on any transport error: an accepted request reset or dropped fails here.
    responses = await asyncio.gather(*tasks)
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.json()["label"] == samples[i % len(samples)]["label"]
    code = await asyncio.to_thread(pod.process.wait, GRACE_S + 5)
    log = pod.log_text()
    assert code == 0, log
    assert time.monotonic() - signalled < GRACE_S
    assert "SIGTERM: stopping 2 workers" in log
    assert log.count("SIGTERM: readiness is 503") == 2
    for worker in workers:
        assert (
            not Path(f"/proc/{worker}").exists()
            or b"zombie" in Path(f"/proc/{worker}/status").read_bytes().lower()
        )


async def test_a_reload_reaches_every_worker(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    make_tiny_bundle(bundle)
    write_manifest(bundle, manifest_dict(bundle) | {"version": "1.0.0"})
    running = start_server(bundle, tmp_path / "pod.log", {"FUSIONSERVE_WORKERS": "2"})
    try:
        running.wait_ready()
        write_manifest(bundle, manifest_dict(bundle) | {"version": "2.0.0"})
        async with httpx.AsyncClient(base_url=running.base, timeout=60) as client:
            reloaded = await client.post("/v1/models/tiny-test-bundle/reload")
        assert reloaded.status_code == 200, reloaded.text
        body = reloaded.json()
        assert (body["previous_version"], body["version"]) == ("1.0.0", "2.0.0")
        assert (body["workers"], body["workers_reloaded"]) == (2, 2)
        versions = set()
        for _ in range(12):  # fresh connections: either worker answers
            async with httpx.AsyncClient(base_url=running.base, timeout=10) as client:
                versions.add((await client.get("/v1/models/tiny-test-bundle")).json()["version"])
        assert versions == {"2.0.0"}
        assert running.log_text().count("reloaded tiny-test-bundle: 1.0.0 -> 2.0.0") == 2
    finally:
        workers = workers_of(running.process.pid)
        running.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(running.process.wait, 30) == 0
        assert not [worker for worker in workers if Path(f"/proc/{worker}").exists()]
