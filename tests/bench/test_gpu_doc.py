"""docs/gpu.md's generated section: the no-run state while bench/results/gpu.json is absent,
the --check staleness mode, and the verdicts of a GPU run, each with the figure it rests on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.gpu import gpu_doc


def test_the_committed_page_is_up_to_date() -> None:
    assert gpu_doc.main(["--check"]) == 0


def test_without_results_the_page_says_no_gpu_run_was_made(tmp_path: Path) -> None:
    page = gpu_doc.sections(tmp_path / "gpu.json")[gpu_doc.SECTION]
    assert page.startswith("**No GPU run has been made yet**")
    assert "bash bench/gpu_check.sh" in page
    if not gpu_doc.results.RESULTS.exists():
        assert "No GPU run has been made yet" in gpu_doc.DOC.read_text()


def _row(workers: int, rps: float, busy: float) -> dict[str, Any]:
    return {
        "workers": workers,
        "throughput_rps": rps,
        "latency_ms": {"p50": 10.0, "p99": 40.0},
        "status_counts": {"200": int(rps * 6)},
        "server_cpu_ms_per_request": 0.9,
        "server_cores_busy": workers * 0.95,
        "machine_busy_cores": workers + 3.0,
        "loadgen": {"processes": 6, "busy_share": busy, "bound": busy >= 0.85},
    }


def gpu_run() -> dict[str, Any]:
    """A GPU run's results, with given figures."""
    scaling_runs = [_row(1, 1000.0, 0.2), _row(8, 6200.0, 0.9)]
    for run in scaling_runs:
        run["speedup"] = run["throughput_rps"] / 1000.0
        run["efficiency"] = run["throughput_rps"] / (1000.0 * run["workers"])
        run["target_met"] = run["efficiency"] >= 0.8
        run["loadgen_bound"] = run["loadgen"]["bound"]
    jpeg = {"throughput_rps": 2300.0, "latency_ms": {"p50": 50.0, "p99": 120.0}}
    png = {"throughput_rps": 300.0, "latency_ms": {"p50": 300.0, "p99": 900.0}}
    for run in (jpeg, png):
        run |= {"status_counts": {"200": 100}, "loadgen": {"busy_share": 0.4}}
    reading = {"gpu_mib": 4000.0, "source": "compute-apps of the server", "rss_mib": 3000.0}
    return {
        "schema": 1,
        "run": {
            "started": "2027-01-05T10:00:00+0000",
            "command": "bench/gpu_check.sh",
            "device": "cuda",
            "quick": False,
            "machine": {"cpus": 16},
            "gpu": "NVIDIA H200, 143771, 570.00",
            "runtime": {"onnxruntime": "1.31.0", "providers": ["CUDAExecutionProvider"]},
            "git_commit": "abcdef0123",
        },
        "steps": {
            "install": {"status": "ok", "seconds": 80, "limit_s": 100},
            "fp16_build": {"status": "failed", "seconds": 20, "limit_s": 90, "note": "no data"},
            "cuda_tests": {"status": "ok", "seconds": 30, "summary": "5 passed in 9s"},
            "scaling": {
                "status": "ok",
                "result": {
                    "clients_per_worker": 64,
                    "duration_s": 6.0,
                    "request": "64x64 JPEG",
                    "settings": {"FUSIONSERVE_DEVICE": "cuda"},
                    "target_efficiency": 0.8,
                    "runs": scaling_runs,
                },
            },
            "saturation": {
                "status": "ok",
                "result": {
                    "requests": {"images": 48, "jpeg": 38, "png": 10, "dimensions": ["640x480"]},
                    "concurrency": 256,
                    "settings": {"FUSIONSERVE_WORKERS": "auto"},
                    "configs": [
                        {
                            "bundle": "fp32",
                            "decoder": "gpu",
                            "path": "models/default",
                            "runs": {"mixed": jpeg, "JPEG": jpeg, "PNG": png},
                        },
                        {
                            "bundle": "fp16",
                            "decoder": "gpu",
                            "path": "models/default-fp16",
                            "skipped": "models/default-fp16 has no bundle",
                        },
                    ],
                    "comparisons": {
                        "gpu_over_cpu_decoding": {"fp32": {"JPEG": 3.1}},
                        "fp16_over_fp32": {"gpu": {"JPEG": None}},
                        "best_jpeg_gpu_rps": 2300.0,
                        "jpeg_target_rps": 2000.0,
                        "jpeg_target_met": True,
                    },
                },
            },
            "memory": {
                "status": "ok",
                "result": {
                    "bundle": "fp32",
                    "decoder": "gpu",
                    "warmup_requests": 1000,
                    "requests": 10000,
                    "concurrency_levels": [1, 128],
                    "batches_formed": {"1": 40, "17-32": 300},
                    "status_counts": {"200": 10000},
                    "ready": reading,
                    "before": reading,
                    "after": reading | {"gpu_mib": 4400.0},
                    "growth": 0.1,
                    "rss_growth": 0.01,
                    "target_growth": 0.05,
                    "target_met": False,
                },
            },
            "batch_sweep": {"status": "timed_out", "seconds": 30, "limit_s": 30},
        },
    }


def test_a_gpu_run_states_each_verdict_with_its_figures() -> None:
    page = gpu_doc.render(gpu_run())
    assert "Not a GPU run" not in page
    assert "GPU: NVIDIA H200" in page
    assert "| fp16_build | failed | 20 | 90 | no data |" in page
    assert "| cuda_tests | ok | 30 | - | 5 passed in 9s |" in page
    # (a): 6,200 = 0.78 x 8 x 1,000: short of 0.8, but the load generator was 90% busy.
    assert "8 workers answered 6200.0 req/s = 0.78 x 8 x one worker's 1000.0 req/s" in page
    assert "busy 90% of its 6 processes' time, so it was the limit" in page
    assert "or limited by the load generator: **met**" in page
    assert "GPU over CPU decoding (req/s): fp32 JPEG 3.10x." in page
    assert "with GPU decoding: **met** (best: 2300.0 req/s)" in page
    assert "| fp16 | gpu | - | not measured: models/default-fp16 has no bundle |" in page
    assert "**missed** (growth 10.00%: 4400 MiB after, 4000 MiB before" in page
    assert "Not measured: step `batch_sweep` did not succeed." in page


def test_check_fails_while_the_section_is_stale(tmp_path: Path) -> None:
    doc = tmp_path / "gpu.md"
    shutil.copy(gpu_doc.DOC, doc)
    data = tmp_path / "gpu.json"
    data.write_text(json.dumps(gpu_run()))
    argv = ["--results", str(data), "--doc", str(doc)]
    assert gpu_doc.main([*argv, "--check"]) == 1
    assert gpu_doc.main(argv) == 0
    assert gpu_doc.main([*argv, "--check"]) == 0
    assert "GPU: NVIDIA H200" in doc.read_text()
    data.unlink()  # the no-run text again: stale until rewritten
    assert gpu_doc.main([*argv, "--check"]) == 1
