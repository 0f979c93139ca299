"""Worker processes: how many, each one's share of the pod's limits, and readiness that
waits for every worker (a real two-worker server is in tests/e2e/test_workers.py)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.config.settings import Settings
from app.core.lifecycle import Lifecycle, Status
from app.main import create_app
from app.workers.pod_status import PodStatus
from app.workers.worker_pool import (
    available_cores,
    cgroup_cpu_quota,
    resolve_workers,
    worker_settings,
)
from tests.support.app_setup import make_settings


def test_auto_is_one_worker_per_two_cores() -> None:
    assert [resolve_workers("auto", cores) for cores in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]
    assert resolve_workers(3, 16) == 3


def test_the_setting_takes_a_count_or_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().workers == "auto"
    monkeypatch.setenv("FUSIONSERVE_WORKERS", "1")
    assert Settings().workers == 1
    monkeypatch.setenv("FUSIONSERVE_WORKERS", "4")
    assert Settings().workers == 4
    for bad in ("0", "65", "many"):
        monkeypatch.setenv("FUSIONSERVE_WORKERS", bad)
        with pytest.raises(ValidationError):
            Settings()


def test_each_worker_gets_its_share_of_the_pods_limits() -> None:
    pod = Settings(max_in_flight=128, intra_op_threads=0, workers=2)
    share = worker_settings(pod, 2, cores=16)
    assert (share.workers, share.max_in_flight, share.intra_op_threads) == (1, 64, 8)
    # Memory budgets are each worker's; other settings are unchanged.
    assert (share.decode_memory_mb, share.body_memory_mb) == (
        pod.decode_memory_mb,
        pod.body_memory_mb,
    )
    assert share.max_queue_wait_s == pod.max_queue_wait_s
    # Set threads are kept; shares never fall to 0.
    assert worker_settings(Settings(intra_op_threads=2), 4, cores=16).intra_op_threads == 2
    tiny = worker_settings(Settings(max_in_flight=3, intra_op_threads=0), 8, cores=2)
    assert (tiny.max_in_flight, tiny.intra_op_threads) == (1, 1)
    assert worker_settings(pod, 1, cores=16) is pod


def _statuses(workers: int) -> multiprocessing.sharedctypes.SynchronizedArray[int]:
    return multiprocessing.get_context("spawn").Array("i", workers)


def test_the_pod_is_ready_when_every_worker_is() -> None:
    statuses = _statuses(3)
    first, second, third = (PodStatus(statuses, i) for i in range(3))
    assert first.not_ready() == ["worker 0: starting", "worker 1: starting", "worker 2: starting"]
    Lifecycle(on_change=first.publish).loaded()  # publishes loading, then ready
    second.publish(Status.LOADING)
    third.publish(Status.READY)
    assert third.not_ready() == ["worker 1: loading"]
    second.publish(Status.READY)
    assert first.not_ready() == []
    with pytest.raises(ValueError, match="worker 3 of 3"):
        PodStatus(statuses, 3)


def test_readiness_waits_for_the_other_workers(tiny_bundle_dir: Path) -> None:
    statuses = _statuses(2)
    app = create_app(make_settings(tiny_bundle_dir), pod=PodStatus(statuses, 0))
    with TestClient(app) as client:
        for _ in range(500):
            if app.state.core.lifecycle.status is Status.READY:
                break
            client.get("/livez")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert (
            ready.json()["detail"] == "waiting for the other worker processes: worker 1: starting"
        )
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/livez").status_code == 200
        PodStatus(statuses, 1).publish(Status.READY)
        assert client.get("/readyz").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        app.state.core.lifecycle.stop_accepting()
        assert PodStatus(statuses, 1).not_ready() == ["worker 0: stopping"]


@pytest.mark.anyio
async def test_a_replacement_worker_serves_only_once_loaded(tiny_bundle_dir: Path) -> None:
    # A first worker starts serving at once (probes answer while it loads); one started again
    # while the pod serves finishes its lifespan start-up, after which uvicorn listens, only
    # once its bundle is loaded and warm.
    for replacement, loaded_when_serving in ((False, False), (True, True)):
        pod = PodStatus(_statuses(2), 0, replacement=replacement)
        app = create_app(make_settings(tiny_bundle_dir), pod=pod)
        async with app.router.lifespan_context(app):
            ready = app.state.core.lifecycle.status is Status.READY
            assert ready is loaded_when_serving, replacement


def test_the_cores_are_the_cgroup_quota_when_it_allows_fewer(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(tmp_path) == affinity  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: rounded up
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert available_cores(tmp_path) == min(affinity, 2)
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert (cgroup_cpu_quota(v1), available_cores(v1)) == (0.5, 1)
    (tmp_path / "cpu.max").write_text("garbage")
    assert cgroup_cpu_quota(tmp_path) is None
