"""A runner replaced under a load the service holds refuses nothing (default bundle, real
server processes, default admission settings): three reloads of the bundle 4 s apart under 16
closed-loop clients, and one of two worker processes killed under the same load and started
again, answer every request 200. Before admission knew the pace of a new runner, the reloads
alone were answered 503 for 36-45% of the requests (the new runner's pace was seeded from a
warm-up on a busy machine, about five times what an item costs under batching)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.repo_paths import SAMPLES
from tests.support.server_process import ServerProcess, start_server, workers_of

pytestmark = pytest.mark.e2e

CLIENTS = 16
DURATION_S = 14.0  # of the reloads' run
RELOADS_AT_S = (3.0, 7.0, 11.0)
KILL_AT_S = 3.0
AFTER_REPLACEMENT_S = 6.0  # of load once the killed worker's replacement is ready
REQUESTS_PER_CONNECTION = 10  # then a new connection, which either worker may take

Form = tuple[dict[str, tuple[str, bytes]], str]


def _forms(samples: list[dict[str, str]]) -> list[Form]:
    return [
        ({"image": (s["file"], (SAMPLES / s["file"]).read_bytes())}, s["text"]) for s in samples
    ]


def _outcome(response: httpx.Response) -> str:
    """``"200"``, or the status and the error's code (which says who refused, and why)."""
    if response.status_code == 200:
        return "200"
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "?"
    return f"{response.status_code} {code}"


async def closed_loop_until(
    base: str, samples: list[dict[str, str]], events: Callable[[], Awaitable[None]]
) -> Counter[str]:
    """``CLIENTS`` closed-loop clients until ``events`` (run beside them) returns; the
    answers by status and error code (``"lost"``: the connection failed, the request was
    never answered).
    Each client opens a new connection every ``REQUESTS_PER_CONNECTION`` requests."""
    forms = _forms(samples)
    counts: Counter[str] = Counter()
    done = asyncio.Event()

    async def client(index: int) -> None:
        n = index
        while not done.is_set():
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                for _ in range(REQUESTS_PER_CONNECTION):
                    files, text = forms[n % len(forms)]
                    n += 1
                    try:
                        response = await http.post("/classify", files=files, data={"text": text})
                    except httpx.TransportError:
                        counts["lost"] += 1
                        break
                    counts[_outcome(response)] += 1
                    if done.is_set():
                        return

    async def run_events() -> None:
        try:
            await events()
        finally:
            done.set()

    await asyncio.gather(*(client(i) for i in range(CLIENTS)), run_events())
    return counts


@pytest.fixture
def server(default_bundle: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    started = start_server(default_bundle, tmp_path / "server.log")
    try:
        started.wait_ready()
        yield started
    finally:
        started.process.kill()
        started.process.wait()


def test_reloads_under_load_refuse_nothing(
    server: ServerProcess, samples: list[dict[str, str]]
) -> None:
    name = httpx.get(f"{server.base}/info", timeout=10).json()["bundle"]["name"]
    reloaded = []

    async def reloads() -> None:
        began = time.monotonic()
        async with httpx.AsyncClient(base_url=server.base, timeout=60) as http:
            for at_s in RELOADS_AT_S:
                await asyncio.sleep(max(0.0, began + at_s - time.monotonic()))
                reloaded.append((await http.post(f"/v1/models/{name}/reload")).status_code)
        await asyncio.sleep(max(0.0, began + DURATION_S - time.monotonic()))

    counts = asyncio.run(closed_loop_until(server.base, samples, reloads))
    assert reloaded == [200, 200, 200], server.log_text()[-3000:]
    assert set(counts) == {"200"}, counts
    assert counts["200"] >= 10 * DURATION_S, counts  # the load really ran


@pytest.fixture
def pod(default_bundle: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    started = start_server(default_bundle, tmp_path / "pod.log", {"FUSIONSERVE_WORKERS": "2"})
    try:
        started.wait_ready()
        yield started
    finally:
        workers = workers_of(started.process.pid)
        started.process.kill()
        started.process.wait()
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)


def test_a_worker_replaced_under_load_refuses_nothing(
    pod: ServerProcess, samples: list[dict[str, str]]
) -> None:
    before = workers_of(pod.process.pid)
    assert len(before) == 2
    ready_after: list[float] = []

    async def kill_one_then_load_its_replacement() -> None:
        await asyncio.sleep(KILL_AT_S)
        os.kill(before[0], signal.SIGKILL)
        killed_at = time.monotonic()
        async with httpx.AsyncClient(base_url=pod.base, timeout=10) as http:
            while time.monotonic() < killed_at + 120 and not ready_after:
                await asyncio.sleep(0.2)
                replaced = len(set(workers_of(pod.process.pid)) - set(before)) == 1
                if replaced and (await http.get("/readyz")).status_code == 200:
                    ready_after.append(time.monotonic() - killed_at)
        await asyncio.sleep(AFTER_REPLACEMENT_S)

    counts = asyncio.run(closed_loop_until(pod.base, samples, kill_one_then_load_its_replacement))
    assert ready_after, "the killed worker was not replaced in time"
    # Only the requests the killed process held are lost (their connections die with it);
    # every request answered, by the other worker and by the replacement from its start, is 200.
    answered = {outcome: n for outcome, n in counts.items() if outcome != "lost"}
    assert set(answered) == {"200"}, counts
    assert counts["lost"] <= CLIENTS, counts
    # Both workers answered items: the survivor and the replacement (each /info is one
    # worker's; fresh connections reach either).
    served = set()
    for _ in range(40):
        served.add(httpx.get(f"{pod.base}/info", timeout=10).json()["stats"]["items"])
    assert len(served) == 2, served
    assert min(served) > 0, served
