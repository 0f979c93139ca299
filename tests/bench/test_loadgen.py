"""The load generator against a tiny in-process aiohttp server: what it sends, what it counts."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web

from bench.harness import loadgen
from bench.harness.payloads import ImagePart, RequestSet, image_prefix, text_suffix

T = TypeVar("T")
TEXTS = [f"text number {i}" for i in range(20000)]  # more than any run here sends
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # only carried, never decoded


@dataclass
class FakeServer:
    """Answers /classify like FusionServe (a timing block), or 503 + Retry-After when told."""

    refuse_every: int = 0  # refuse every Nth request (0: never)
    texts: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)

    async def classify(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form["image"]
        assert isinstance(image, web.FileField)
        self.images.append(image.file.read())
        self.texts.append(str(form["text"]))
        if self.refuse_every and len(self.texts) % self.refuse_every == 0:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "0"})
        await asyncio.sleep(0.002)
        return web.json_response({"label": "x", "timing": {"total_ms": 1.5}})


def _requests() -> RequestSet:
    part = ImagePart(IMAGE, "PNG", (1, 1), image_prefix(IMAGE, "PNG"))
    return RequestSet([part], TEXTS, [text_suffix(t) for t in TEXTS])


@asynccontextmanager
async def _serving(server: FakeServer) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/classify", server.classify)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # a free port, picked by the OS
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()


def _against(server: FakeServer, load: Callable[[str], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _serving(server) as url:
            return await load(url)

    return asyncio.run(main())


@contextmanager
def _serving_in_a_thread(server: FakeServer) -> Iterator[str]:
    """The fake server on its own event loop in a thread, for the blocking ``run`` helpers."""
    loop = asyncio.new_event_loop()
    serving = _serving(server)
    url = loop.run_until_complete(serving.__aenter__())
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(serving.__aexit__(None, None, None))
        loop.close()


@dataclass(frozen=True)
class Plan:
    concurrency: int = 3
    warmup_s: float = 0.2
    saturation_s: float = 0.4
    single_s: float = 0.3


def test_phase_helpers_run_the_plans_phases() -> None:
    server, requests, plan = FakeServer(), _requests(), Plan()
    with _serving_in_a_thread(server) as url:
        warm = loadgen.warmup_run(url, requests, plan).summary()
        saturation = loadgen.saturation_run(url, requests, plan).summary()
        single = loadgen.single_run(url, requests, plan).summary()
    assert (warm["mode"], warm["concurrency"], warm["duration_s"]) == ("closed", 3, 0.2)
    assert (saturation["mode"], saturation["concurrency"]) == ("closed", 3)
    assert saturation["duration_s"] == saturation["window_s"] == 0.4
    assert (single["mode"], single["concurrency"], single["duration_s"]) == ("single", 1, 0.3)
    assert min(warm["ok"], saturation["ok"], single["ok"]) > 0
    sent = warm["requests"] + saturation["requests"] + single["requests"]
    assert len(server.texts) >= sent  # answers after a window closes are sent, not counted
    assert len(set(server.texts)) == len(server.texts)  # the index kept counting


def test_closed_loop_counts_answers_in_its_window_and_sends_fresh_texts() -> None:
    server, requests = FakeServer(), _requests()
    result = _against(server, lambda url: loadgen.closed_loop(url, requests, 4, 0.5))
    summary = result.summary()
    assert summary["mode"] == "closed"
    assert summary["concurrency"] == 4
    assert summary["ok"] == len(result.samples) == summary["requests"] > 10
    assert summary["status_counts"] == {"200": summary["ok"]}
    assert summary["throughput_rps"] == round(summary["ok"] / 0.5, 3)
    assert all(s.finished <= s.started + 0.5 for s in result.samples)
    assert summary["latency_ms"]["p50"] >= 2.0  # the server's 2 ms sleep
    # Every request carried the image and its own, never repeated, text.
    assert len(server.texts) == len(set(server.texts)) >= summary["requests"]
    assert server.texts == TEXTS[: len(server.texts)]
    assert set(server.images) == {IMAGE}


def test_open_loop_sends_exactly_rate_times_duration_and_counts_refusals() -> None:
    server, requests = FakeServer(refuse_every=5), _requests()
    result = _against(server, lambda url: loadgen.open_loop(url, requests, 60.0, 0.5, seed=3))
    summary = result.summary()
    assert summary["requests"] == len(server.texts) == 30
    assert summary["status_counts"] == {"200": 24, "503": 6}
    assert summary["retry_after"] == {"503": 6, "503_with_retry_after": 6}
    assert summary["ok"] == 24
    # Latency runs from the scheduled send time, so it is never below the send lag.
    for sample in result.samples:
        assert sample.scheduled <= sample.started <= sample.finished
        assert sample.latency_s >= sample.finished - sample.started
    scheduled = sorted(s.scheduled for s in result.samples)
    assert scheduled[-1] - scheduled[0] <= 0.5


def test_single_client_reads_the_servers_timing() -> None:
    server, requests = FakeServer(), _requests()
    result = _against(server, lambda url: loadgen.single_client(url, requests, 0.3))
    summary = result.summary()
    assert summary["mode"] == "single"
    assert summary["concurrency"] == 1
    assert summary["server_total_ms"] is not None
    assert summary["server_total_ms"]["p50"] == 1.5
    assert all(s.server_ms == 1.5 for s in result.samples)


def test_classify_each_returns_bodies_in_order_and_raises_on_refusal() -> None:
    requests = _requests()
    answers: list[Any] = _against(
        FakeServer(), lambda url: loadgen.classify_each(url, requests, [3, 1])
    )
    assert answers == [{"label": "x", "timing": {"total_ms": 1.5}}] * 2
    with pytest.raises(RuntimeError, match="HTTP 503"):
        _against(FakeServer(refuse_every=1), lambda url: loadgen.classify_each(url, requests, [0]))


def test_summary_of_a_run_without_answers() -> None:
    summary = loadgen.RunResult("open", 1.0, rate=5.0).summary()
    assert summary["requests"] == summary["ok"] == 0
    assert summary["throughput_rps"] == 0.0
    assert summary["latency_ms"]["p99"] is None
    assert json.loads(json.dumps(summary)) == summary  # results files are JSON
