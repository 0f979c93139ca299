"""Admission by expected wait on a real server (uvicorn on a socket, the tiny bundle):
a fast model takes 64 concurrent clients with default settings and refuses none; a slow
model offered three times what it can do answers only 200 or 503, and what it accepts is
answered in bounded time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from app.config.settings import Settings
from app.core.encoder_pipeline import PreparedItem
from app.core.engine import Engine, build_engine
from app.core.pipeline import ItemResult
from app.main import create_app
from tests.support.app_setup import make_settings
from tests.support.gated_service import numbered_form
from tests.support.live_server import serving

CLIENTS = 64
# What one item costs the slow model: 33 items/s at most, so that three times that (100
# requests/s) is a rate the in-process client reaches even on a loaded 2-core machine (at
# 50 items/s, 150 requests/s, a CI run's client fell so far behind that nothing was refused).
ITEM_S = 0.03
MAX_BATCH = 4
DURATION_S = 3.0  # of the slow model's open-loop run, at the client's intended rate


async def closed_loop(address: str, clients: int, requests_each: int) -> list[str]:
    """``clients`` clients, each sending its requests one after the other; each answer's
    status, with the error's code and message for any but a 200."""
    forms = [numbered_form(i) for i in range(8)]

    async def client(http: httpx.AsyncClient, index: int) -> list[str]:
        statuses = []
        for n in range(requests_each):
            files, data = forms[(index + n) % len(forms)]
            response = await http.post("/classify", files=files, data=data)
            ok = response.status_code == 200
            statuses.append("200" if ok else f"{response.status_code} {response.text}")
        return statuses

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://{address}", limits=limits, timeout=30) as http:
        runs = await asyncio.gather(*(client(http, i) for i in range(clients)))
    return [status for run in runs for status in run]


def test_a_fast_model_takes_64_clients_with_default_settings(tiny_bundle_dir: Path) -> None:
    app = create_app(make_settings(tiny_bundle_dir))
    with serving(app) as address:
        statuses = asyncio.run(closed_loop(address, CLIENTS, requests_each=3))
    assert len(statuses) == CLIENTS * 3
    assert set(statuses) == {"200"}


def slow_model(settings: Settings) -> Engine:
    """The tiny bundle, made to cost ``ITEM_S`` per item (a model that batching cannot
    speed up: the hardest case for a wait prediction)."""
    engine = build_engine(settings)
    real_run = engine.pipeline.run_items

    def run(items: Sequence[PreparedItem]) -> list[ItemResult]:
        time.sleep(ITEM_S * len(items))
        return real_run(items)

    engine.pipeline.run_items = run  # type: ignore[method-assign]
    return engine


async def open_loop(address: str, rate: float, duration_s: float) -> list[tuple[int, float, str]]:
    """Requests started at ``rate`` per second whatever the answers; (status, seconds,
    Retry-After) of each: for an answered request the seconds the server reports (from its
    admission to its answer), which the client's own delays on this shared machine (the
    client runs in the server's process) do not inflate."""
    forms = [numbered_form(i) for i in range(8)]

    async def one(http: httpx.AsyncClient, index: int) -> tuple[int, float, str]:
        files, data = forms[index % len(forms)]
        response = await http.post("/classify", files=files, data=data)
        seconds = response.json()["timing"]["total_ms"] / 1000 if response.is_success else 0.0
        return response.status_code, seconds, response.headers.get("retry-after", "")

    limits = httpx.Limits(max_connections=1000)
    async with httpx.AsyncClient(base_url=f"http://{address}", limits=limits, timeout=30) as http:
        tasks = []
        began = time.perf_counter()
        for index in range(int(rate * duration_s)):
            await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(http, index)))
        return list(await asyncio.gather(*tasks))


def test_a_slow_model_at_three_times_its_rate_answers_200_or_503_in_time(
    tiny_bundle_dir: Path,
) -> None:
    settings = make_settings(tiny_bundle_dir, max_batch_size=MAX_BATCH)
    app = create_app(settings, engine_factory=slow_model)
    with serving(app) as address:
        answers = asyncio.run(open_loop(address, rate=3 / ITEM_S, duration_s=DURATION_S))
    statuses = {status for status, _, _ in answers}
    assert statuses == {200, 503}, sorted(statuses)
    refused = [retry for status, _, retry in answers if status == 503]
    assert all(retry.isdigit() and int(retry) >= 1 for retry in refused)
    accepted = [seconds for status, seconds, _ in answers if status == 200]
    # What was accepted was answered (from admission, as the server timed it) within the
    # wait target, its batches and the decoding around them, with a second's room for a
    # loaded 2-core machine that also runs the client (CI saw client-timed p99s of 1.2 and
    # 1.6 s): server-timed, a p99 of about 1.3 s here (bound 2.24 s), against 6.0-6.2 s when
    # nothing bounds the wait (max_queue_wait_s=60, max_in_flight=1000; measured 2026-12-02,
    # twice). How many are accepted is not asserted: it follows the rate the client really
    # reaches, which a loaded machine stretches (a CI run, at 50 items/s, sent its 450
    # requests slowly enough for 308 to be taken, every one answered in bounded time).
    bound_s = 2 * settings.max_queue_wait_s + 2 * MAX_BATCH * ITEM_S + 1.0
    p99 = float(np.percentile(accepted, 99))
    assert p99 < bound_s, (p99, bound_s, len(accepted))
