"""``gc_young_threshold`` reaches the server process, and /metrics counts its collections."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.server import tune_collector
from tests.support.images import encode_image, photo
from tests.support.server_process import start_server

IMAGE = encode_image(photo(64, 48), "JPEG")


def _collections(base: str) -> dict[str, float]:
    """python_gc_collections_total by generation."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    (family,) = (
        f for f in text_string_to_metric_families(text) if f.name == "python_gc_collections"
    )
    return {s.labels["generation"]: s.value for s in family.samples if s.name.endswith("_total")}


def _classify_concurrently(base: str, count: int) -> None:
    def one(i: int) -> int:
        response = httpx.post(
            f"{base}/classify",
            files={"image": ("i.jpg", IMAGE, "image/jpeg")},
            data={"text": f"a red bird {i}"},
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(count))) == {200}


@pytest.fixture
def restored_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_thresholds")
def test_tune_collector_sets_the_youngest_generation_only() -> None:
    _, middle, old = gc.get_threshold()
    tune_collector(12345)
    assert gc.get_threshold() == (12345, middle, old)


@pytest.mark.parametrize(("threshold", "collects"), [("0", False), ("1", True)])
def test_the_server_collects_as_its_setting_says(
    tiny_bundle_dir: Path, tmp_path: Path, threshold: str, collects: bool
) -> None:
    """0: no automatic collection however many requests; 1: a young collection at nearly
    every allocation (the contrast shows the counter would see them)."""
    env = {"FUSIONSERVE_GC_YOUNG_THRESHOLD": threshold, "FUSIONSERVE_GRPC_PORT": "0"}
    server = start_server(tiny_bundle_dir, tmp_path / "server.log", env)
    try:
        server.wait_ready()
        before = _collections(server.base)
        _classify_concurrently(server.base, 40)
        after = _collections(server.base)
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.log_text()
    young = after["0"] - before["0"]
    if collects:
        assert young > 100, (before, after)
    else:
        assert after == before, "collections ran with automatic collection off"
