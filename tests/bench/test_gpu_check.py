"""bench/gpu_check.sh and its runner (bench.gpu): the script's syntax and its refusal without
models/default; every measurement step end to end in CPU quick mode on the tiny bundle with 1
and 2 workers, rendered into a page; a failing step recorded while the next still runs; and
the helpers' rules on given numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.gpu import gpu_check, gpu_doc, gpu_memory, results
from bench.gpu.batch_sweep import SweepRow, recommend_batch_size
from bench.gpu.memory_growth import phase_requests
from bench.gpu.saturation import comparisons
from bench.gpu.serving import batches_formed
from bench.harness import procs
from bench.harness.multiload import shares
from tests.support.repo_paths import ROOT as REPO_ROOT
from tests.support.tiny_bundle import make_tiny_bundle

SCRIPT = REPO_ROOT / "bench" / "gpu_check.sh"
PORT = 8571  # away from the benchmarks' own ports (8141-8191)


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:  # not installed on every machine; bash -n always runs
        subprocess.run([shellcheck, "-x", str(SCRIPT)], check=True)


def test_the_script_stops_without_the_default_bundle(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    shutil.copy(SCRIPT, tmp_path / "bench" / "gpu_check.sh")
    done = subprocess.run(
        ["bash", str(tmp_path / "bench" / "gpu_check.sh"), "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "models/default is missing" in done.stderr
    assert "make bundle" in done.stderr
    assert not (tmp_path / "bench" / "results").exists()  # stopped before anything ran


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The runner's every step in CPU quick mode on the tiny bundle (about 45 s on 2 cores)."""
    folder = tmp_path_factory.mktemp("gpu-check")
    bundle = make_tiny_bundle(folder / "tiny")
    out = folder / "gpu.json"
    python = [sys.executable, "-m"]
    begin = ["bench.gpu.results", "begin", "--out", str(out), "--device", "cpu", "--quick"]
    subprocess.run([*python, *begin], cwd=REPO_ROOT, check=True)
    describe = ["bench.gpu.gpu_check", "describe", "--out", str(out)]
    subprocess.run([*python, *describe], cwd=REPO_ROOT, check=True)
    run = ["bench.gpu.gpu_check", "run", "--out", str(out), "--device", "cpu", "--quick"]
    run += ["--bundle", str(bundle), "--fp16-bundle", str(folder / "no-fp16"), "--port", str(PORT)]
    done = subprocess.run([*python, *run], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    data["_path"] = str(out)
    return data


def test_every_step_ran_and_recorded_itself(quick_run: dict[str, Any]) -> None:
    steps = quick_run["steps"]
    assert {name: steps[name]["status"] for name in gpu_check.MEASURES} == dict.fromkeys(
        gpu_check.MEASURES, "ok"
    )
    assert all(steps[name]["seconds"] > 0 for name in gpu_check.MEASURES)
    run = quick_run["run"]
    assert run["device"] == "cpu"
    assert run["quick"] is True
    assert "CPUExecutionProvider" in run["runtime"]["providers"]
    # Every server is gone: none of the ports is still served.
    assert not any(procs.port_open(port) for port in range(PORT, PORT + 25))


def test_scaling_measures_one_and_two_workers(quick_run: dict[str, Any]) -> None:
    result = quick_run["steps"]["scaling"]["result"]
    runs = {run["workers"]: run for run in result["runs"]}
    assert set(runs) == {1, 2}
    for run in runs.values():
        assert run["status_counts"].get("200", 0) > 0
        assert run["throughput_rps"] > 0
        assert run["server_cpu_ms_per_request"] > 0
        assert run["loadgen"]["processes"] == 1
        assert 0 < run["loadgen"]["busy_share"] <= 1.5
    assert runs[1]["efficiency"] == 1.0
    two = runs[2]
    assert two["efficiency"] == pytest.approx(
        two["throughput_rps"] / (2 * runs[1]["throughput_rps"]), abs=0.002
    )


def test_saturation_reports_each_format_and_what_it_could_not_run(
    quick_run: dict[str, Any],
) -> None:
    result = quick_run["steps"]["saturation"]["result"]
    fp32, fp16 = result["configs"]
    assert (fp32["bundle"], fp32["decoder"], fp16["bundle"]) == ("fp32", "cpu", "fp16")
    assert set(fp32["runs"]) == {"mixed", "JPEG", "PNG"}
    assert all(run["ok"] > 0 for run in fp32["runs"].values())
    assert fp32["info"]["execution"]["image_decoder"] == "cpu"
    assert "has no bundle" in fp16["skipped"]
    assert result["comparisons"]["jpeg_target_met"] is None  # no GPU decoding here


def test_memory_reads_before_and_after_varied_batches(quick_run: dict[str, Any]) -> None:
    result = quick_run["steps"]["memory"]["result"]
    assert result["status_counts"] == {"200": result["requests"]}
    assert len(result["batches_formed"]) >= 2  # batches of several sizes formed
    for point in ("ready", "before", "after"):
        assert result[point]["rss_mib"] > 0
    if shutil.which("nvidia-smi") is None:
        assert result["after"]["gpu_mib"] is None
        assert result["target_met"] is None


def test_batch_sweep_recommends_a_measured_size(quick_run: dict[str, Any]) -> None:
    result = quick_run["steps"]["batch_sweep"]["result"]
    assert [row["batch_size"] for row in result["rows"]] == [1, 4, 8]
    assert all(row["items_per_s"] > 0 and row["batches"] >= 3 for row in result["rows"])
    assert result["recommended_batch_size"] == recommend_batch_size(result["rows"])


def test_the_quick_run_renders_every_section(quick_run: dict[str, Any]) -> None:
    page = gpu_doc.sections(Path(quick_run["_path"]))[gpu_doc.SECTION]
    for heading in ("### Steps", "### (a)", "### (b)", "### (c)", "### (d)"):
        assert heading in page
    assert "**Not a GPU run**" in page
    assert "| 2 | " in page  # the two-worker row
    assert "Recommended GPU batch size: **" in page
    assert "Not measured" not in page


def test_a_failing_step_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    missing = tmp_path / "missing"
    argv = ["run", "--out", str(out), "--device", "cpu", "--quick", "--bundle", str(missing)]
    argv += ["--fp16-bundle", str(missing), "--steps", "batch_sweep,saturation"]
    argv += ["--port", str(PORT + 30)]
    assert gpu_check.main(argv) == 1
    steps = results.load(out)["steps"]
    assert steps["batch_sweep"]["status"] == "failed"
    assert steps["batch_sweep"]["note"]
    assert steps["saturation"]["status"] == "ok"
    assert all("skipped" in c for c in steps["saturation"]["result"]["configs"])


def test_a_killed_step_is_closed_as_timed_out(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    results.update_step(out, "memory", status="running", limit_s=45)
    results.update_step(out, "scaling", status="ok", seconds=3.0)
    assert results.close_unfinished(out, "memory", 124, "limit") == "timed_out"
    assert results.close_unfinished(out, "scaling", 1, "?") == "ok"  # recorded by the runner
    assert results.close_unfinished(out, "batch_sweep", 1, "crashed") == "failed"
    steps = results.load(out)["steps"]
    assert steps["memory"] == {"status": "timed_out", "limit_s": 45, "rc": 124, "note": "limit"}


def test_the_batch_size_rule() -> None:
    def rows(*pairs: tuple[int, float]) -> list[SweepRow]:
        return [
            {"batch_size": b, "batches": 10, "items_per_s": v, "ms_per_batch": 1.0}
            for b, v in pairs
        ]

    curve = rows((1, 400.0), (4, 1500.0), (8, 2600.0), (16, 2950.0), (32, 3100.0), (64, 3000.0))
    assert recommend_batch_size(curve) == 16  # 2950 >= 0.9 x 3100 = 2790; 2600 is not
    assert recommend_batch_size(curve, fraction=0.8) == 8
    assert recommend_batch_size(rows((1, 10.0), (8, 9.0))) == 1  # the best is the smallest
    with pytest.raises(ValueError, match="no batch size"):
        recommend_batch_size([])


def test_gpu_memory_is_read_from_nvidia_smi_output() -> None:
    apps = "1234, 2048\n1240, 512\n999, [N/A]\n1234, 100\n"
    assert gpu_memory.parse_compute_apps(apps) == {1234: 2148.0, 1240: 512.0}
    assert gpu_memory.parse_gpu_used("  81920\n1024\n") == 81920.0
    assert gpu_memory.parse_gpu_used("[N/A]\n") is None


def test_request_counts_and_batch_histograms() -> None:
    counts = phase_requests(10_000, (1, 2, 3, 5, 8, 13, 21, 32, 48, 64, 96, 128))
    assert sum(counts) == 10_000
    assert counts[0] >= 1
    assert counts == sorted(counts)
    assert shares(10, 3) == [4, 3, 3]
    before = {"1.0": 5.0, "2.0": 5.0, "4.0": 6.0, "8.0": 6.0, "+Inf": 6.0}
    after = {"1.0": 15.0, "2.0": 18.0, "4.0": 25.0, "8.0": 30.0, "+Inf": 30.0}
    assert batches_formed(before, after) == {"1": 10, "2": 3, "3-4": 6, "5-8": 5}


def test_side_by_side_ratios_and_the_jpeg_target() -> None:
    def config(bundle: str, decoder: str, jpeg: float) -> dict[str, Any]:
        runs = {fmt: {"throughput_rps": jpeg / 2} for fmt in ("mixed", "PNG")}
        return {
            "bundle": bundle,
            "decoder": decoder,
            "runs": {**runs, "JPEG": {"throughput_rps": jpeg}},
        }

    measured = comparisons(
        [config("fp32", "cpu", 800.0), config("fp32", "gpu", 2400.0), config("fp16", "gpu", 2600.0)]
    )
    assert measured["gpu_over_cpu_decoding"]["fp32"]["JPEG"] == 3.0
    assert (
        measured["gpu_over_cpu_decoding"]["fp16"]["JPEG"] is None
    )  # fp16 on the CPU decoder: not run
    assert measured["fp16_over_fp32"]["gpu"]["JPEG"] == pytest.approx(1.083, abs=0.001)
    assert measured["best_jpeg_gpu_rps"] == 2600.0
    assert measured["jpeg_target_met"] is True
