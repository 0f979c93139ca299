"""What the GPU check measures, and for how long: the full plan (the GPU machine, each step
sized to fit its time limit in bench/gpu_check.sh) and the quick one (a CPU machine, to test
the script)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from bench.harness.paths import REPO_ROOT

Device = Literal["cuda", "cpu"]
STEPS = ("scaling", "saturation", "memory", "batch_sweep")
DEFAULT_BUNDLE = REPO_ROOT / "models" / "default"
FP16_BUNDLE = REPO_ROOT / "models" / "default-fp16"

# The GPU overlay's serving settings (deploy/overlays/gpu/kustomization.yaml) that the
# default-bundle steps run with, so their figures are the deployment's; workers stay "auto".
GPU_OVERLAY_ENV = {
    "FUSIONSERVE_PREPROCESS_THREADS": "4",
    "FUSIONSERVE_INTRA_OP_THREADS": "1",
}
# The deployment's batch size today ("not benchmarked"); the sweep recommends one.
DEPLOYED_MAX_BATCH_SIZE = 32
# Concurrency levels of the memory step: batches of many sizes form under them.
MEMORY_CONCURRENCY = (1, 2, 3, 5, 8, 13, 21, 32, 48, 64, 96, 128)
SWEEP_BATCH_SIZES = (1, 4, 8, 16, 32, 64, 128)
SCALING_WORKERS = (1, 2, 4, 8)
# Targets of issue 16.
SCALING_EFFICIENCY = 0.8  # n workers >= 0.8 x n x one worker's req/s
JPEG_TARGET_RPS = 2000.0  # default bundle, JPEG photos, GPU decoding
MEMORY_GROWTH = 0.05  # GPU memory after 10,000 requests <= 1.05 x before
SWEEP_FRACTION = 0.9  # the smallest batch size within 90% of the best items/s


def loadgen_processes(cpus: int | None = None) -> int:
    """Load generator processes: half the cores less one, 1 to 6 (6 on 16 cores, 1 on 2)."""
    cores = cpus if cpus is not None else os.cpu_count() or 1
    return max(1, min(6, cores // 2 - 1))


@dataclass(frozen=True)
class Plan:
    """Durations, sizes and settings of one run of the steps."""

    device: Device = "cuda"
    quick: bool = False
    workers: tuple[int, ...] = SCALING_WORKERS
    scaling_warmup_s: float = 2.0
    scaling_s: float = 6.0
    clients_per_worker: int = 64
    saturation_concurrency: int = 256
    saturation_warmup_s: float = 2.0
    mixed_s: float = 5.0
    jpeg_s: float = 5.0
    png_s: float = 3.0
    decoders: tuple[str, ...] = ("cpu", "gpu")
    memory_requests: int = 10_000
    memory_warmup_requests: int = 1_000
    memory_concurrency: tuple[int, ...] = MEMORY_CONCURRENCY
    sweep_batch_sizes: tuple[int, ...] = SWEEP_BATCH_SIZES
    sweep_s: float = 2.0
    max_batch_size: int = DEPLOYED_MAX_BATCH_SIZE
    loadgen_processes: int = loadgen_processes()
    fp32_bundle: Path = DEFAULT_BUNDLE
    fp16_bundle: Path = FP16_BUNDLE
    base_port: int = 8171

    @classmethod
    def quick_plan(cls, device: Device) -> Plan:
        """Short runs, workers 1 and 2, few requests, the CPU decoder alone off CUDA."""
        return cls(
            device=device,
            quick=True,
            workers=(1, 2),
            scaling_warmup_s=0.5,
            scaling_s=1.5,
            clients_per_worker=16,
            saturation_concurrency=16,
            saturation_warmup_s=0.5,
            mixed_s=1.5,
            jpeg_s=1.0,
            png_s=1.0,
            decoders=("cpu", "gpu") if device == "cuda" else ("cpu",),
            memory_requests=300,
            memory_warmup_requests=60,
            memory_concurrency=(1, 4, 16),
            sweep_batch_sizes=(1, 4, 8),
            sweep_s=0.3,
            max_batch_size=8,
        )

    def located(
        self, fp32_bundle: Path | None, fp16_bundle: Path | None, base_port: int | None
    ) -> Plan:
        """This plan with other bundles or ports where given (None: unchanged)."""
        return replace(
            self,
            fp32_bundle=fp32_bundle or self.fp32_bundle,
            fp16_bundle=fp16_bundle or self.fp16_bundle,
            base_port=base_port or self.base_port,
        )
