"""The stages of a Ray scoring job, from the cluster's resources: model actors on GPUs only
where the bundle runs on CUDA, preparing tasks on the CPUs they leave."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.scoring.ray_job import RayOptions, StagePlan, plan_stages
from app.scoring.score_errors import ScoreError
from tests.support.app_setup import make_settings

CPU_CLUSTER = {"CPU": 16.0, "memory": 64e9}
GPU_CLUSTER = {"CPU": 32.0, "GPU": 4.0}


def test_a_cpu_cluster_prepares_on_the_cpus_the_model_leaves(tmp_path: Path) -> None:
    plan = plan_stages(make_settings(tmp_path, device="auto"), RayOptions(), CPU_CLUSTER)
    assert plan == StagePlan(prepare_tasks=15, model_gpus=0.0)
    options = RayOptions(model_actors=2, model_cpus=4)
    assert plan_stages(make_settings(tmp_path), options, CPU_CLUSTER).prepare_tasks == 8


def test_asked_preparing_tasks_are_kept(tmp_path: Path) -> None:
    options = RayOptions(prepare_tasks=40, model_actors=2, model_cpus=8)
    assert plan_stages(make_settings(tmp_path), options, CPU_CLUSTER).prepare_tasks == 40
    crowded = RayOptions(model_actors=4, model_cpus=8)
    assert plan_stages(make_settings(tmp_path), crowded, CPU_CLUSTER).prepare_tasks == 1


@pytest.mark.parametrize(("device", "gpus"), [("auto", 1.0), ("cuda", 1.0), ("cpu", 0.0)])
def test_model_actors_take_a_gpu_when_the_bundle_runs_on_cuda(
    tmp_path: Path, device: str, gpus: float
) -> None:
    settings = make_settings(tmp_path, device=device)
    assert plan_stages(settings, RayOptions(model_actors=4), GPU_CLUSTER).model_gpus == gpus


def test_cuda_on_a_cluster_without_gpus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScoreError, match="no GPU"):
        plan_stages(make_settings(tmp_path, device="cuda"), RayOptions(), CPU_CLUSTER)
