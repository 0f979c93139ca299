"""No upload within the limits exhausts a real server's memory (default settings).

A `fusionserve serve` process on the default bundle gets bursts of 4, 8 and 16 concurrent
uploads of small files that decode to about 98% of the pixel cap, cycling through every
format (bench.memory.near_cap_images), then a burst of Open Inference Protocol JSON requests whose
bodies together are far over the body budget. Every answer must be 200, 413 or 503 (with
Retry-After) in the JSON error envelope; the process's peak RSS (VmHWM, reset before each
burst) must stay under the 1 GiB limit deploy/ gives a replica; its RSS must come back within
100 MB of the warmed-up figure within 5 s; and it must then answer normally.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.memory.near_cap_images import CASES, near_cap_images
from bench.memory.sizing_rule import BODY_COPIES
from tests.support.memory_sizing import measured_warm_rss_bytes
from tests.support.repo_paths import SAMPLES
from tests.support.server_process import ServerProcess, start_server

pytestmark = pytest.mark.e2e

GiB = 2**30
MB = 10**6
MAX_PIXELS = 50_000_000  # the default FUSIONSERVE_MAX_IMAGE_PIXELS
BODY_BUDGET = 64 * 2**20  # the default FUSIONSERVE_BODY_MEMORY_MB
BACK_WITHIN = 100 * MB
SETTLE_S = 5.0
TEXT = "Grey suede cushioned shoes, premium look, for evenings out"


def _status(pid: int, key: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    assert match is not None, key
    return int(match.group(1)) * 1024


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


@pytest.fixture(scope="module")
def payloads() -> dict[str, bytes]:
    return near_cap_images(MAX_PIXELS)


@pytest.fixture(scope="module")
def server(
    default_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    started = start_server(default_bundle, tmp_path_factory.mktemp("memory") / "server.log")
    try:
        started.wait_ready()
        try:
            _reset_peak(started.process.pid)
        except OSError as exc:
            pytest.skip(f"the server's peak RSS cannot be reset here ({exc})")
        yield started
    finally:
        started.process.terminate()
        assert started.process.wait(timeout=30) == 0, started.log_text()


@pytest.fixture(scope="module")
def warm_rss(server: ServerProcess, samples: list[dict[str, Any]]) -> int:
    """RSS after normal requests have run every batch path once."""
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for sample in samples * 3:
            image = (SAMPLES / sample["file"]).read_bytes()
            response = client.post(
                "/classify", files={"image": ("s.png", image)}, data={"text": sample["text"]}
            )
            assert response.status_code == 200, response.text
    time.sleep(1.0)
    return _status(server.process.pid, "VmRSS")


def test_warm_rss_is_the_one_deploy_is_sized_from(warm_rss: int) -> None:
    recorded = measured_warm_rss_bytes()
    assert warm_rss <= 1.1 * recorded, (warm_rss, recorded)


def _check_answer(response: httpx.Response) -> None:
    assert response.status_code in (200, 413, 503), response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "request_id"}
    if response.status_code == 503:
        assert "Retry-After" in response.headers


def _burst(base: str, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    def send(request: dict[str, Any]) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=60) as client:
            return client.post(**request)

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def _settles(pid: int, warm: int) -> float | None:
    """Seconds until RSS is back within BACK_WITHIN of ``warm`` (None: not in SETTLE_S)."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_S:
        if _status(pid, "VmRSS") <= warm + BACK_WITHIN:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def _classifies_normally(base: str, samples: list[dict[str, Any]]) -> None:
    sample = samples[0]
    image = (SAMPLES / sample["file"]).read_bytes()
    response = httpx.post(
        f"{base}/classify",
        files={"image": ("s.png", image)},
        data={"text": sample["text"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["label"] == sample["label"]


@pytest.mark.parametrize("concurrency", [4, 8, 16])
def test_near_cap_uploads_stay_under_the_limit(
    server: ServerProcess,
    warm_rss: int,
    payloads: dict[str, bytes],
    samples: list[dict[str, Any]],
    concurrency: int,
) -> None:
    pid = server.process.pid
    names = [CASES[i % len(CASES)] for i in range(concurrency)]
    requests = [
        {"url": "/classify", "files": {"image": ("f", payloads[n])}, "data": {"text": TEXT}}
        for n in names
    ]
    _reset_peak(pid)
    answers = _burst(server.base, requests)
    peak = _status(pid, "VmHWM")
    for answer in answers:
        _check_answer(answer)
    assert any(a.status_code == 200 for a in answers)
    assert peak < GiB, f"peak RSS {peak / MB:.0f} MB"
    settled = _settles(pid, warm_rss)
    assert settled is not None, f"RSS {_status(pid, 'VmRSS') / MB:.0f} MB, warm {warm_rss / MB:.0f}"
    _classifies_normally(server.base, samples)


def _noise_jpeg(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_json_bodies_over_the_body_budget(
    server: ServerProcess, warm_rss: int, samples: list[dict[str, Any]], default_bundle: Path
) -> None:
    name = json.loads((default_bundle / "manifest.json").read_text())["name"]
    image = base64.b64encode(_noise_jpeg(3000, 2200)).decode()  # ~10 MB of base64
    body = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]},
                {"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]},
            ]
        }
    )
    request = {
        "url": f"/v2/models/{name}/infer",
        "content": body,
        "headers": {"Content-Type": "application/json"},
    }
    assert 16 * len(body) > 2 * BODY_BUDGET
    pid = server.process.pid
    _reset_peak(pid)
    answers = _burst(server.base, [request] * 16)
    peak = _status(pid, "VmHWM")
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses
    assert 503 in statuses  # the budget held
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["error"]  # the Open Inference Protocol's {"error": "..."}
            assert "Retry-After" in answer.headers
    # Bodies held at once are at most the budget, each byte in memory at most BODY_COPIES
    # times (tests/support/memory_sizing.py; measured: 3.25); these JPEGs' drafted decodes
    # are small beside that.
    assert peak - warm_rss < BODY_COPIES * BODY_BUDGET, f"{(peak - warm_rss) / MB:.0f} MB"
    assert peak < GiB
    assert _settles(pid, warm_rss) is not None
    _classifies_normally(server.base, samples)
