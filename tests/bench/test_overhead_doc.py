"""bench.overhead.overhead_summary and overhead_doc on small hand-made results: medians and
ranges by repeat, the 503s, the figures above the floor, and issue 15's verdicts at their
bounds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from bench.overhead.overhead_doc import render
from bench.overhead.overhead_summary import summarize

SYSTEMS = ("fusionserve", "litserve", "floor")


def record(
    system: str,
    repeat: int,
    rps: float,
    cpu: float,
    *,
    p50: float = 50.0,
    p99: float = 90.0,
    statuses: dict[str, int] | None = None,
    warmup: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "system": system,
        "repeat": repeat,
        "position": 0,
        "startup_s": 1.0,
        "warmup_status_counts": warmup or {"200": 100},
        "throughput_rps": rps,
        "latency_ms": {"p50": p50, "p90": p99, "p99": p99, "mean": p50, "max": p99},
        "requests": int(rps * 10),
        "status_counts": statuses or {"200": int(rps * 10)},
        "cpu_ms_per_request": cpu,
        "server_cpu_s": cpu * rps / 100,
        "client_cpu_ms_per_request": 0.1,
        "other_cpu_s": 0.05 * repeat,
        "processes": 5 if system == "litserve" else 1,
        "stop": {"stop_s": 0.1},
    }


def results(runs: list[dict[str, Any]], systems: Sequence[str] = SYSTEMS) -> dict[str, Any]:
    labels = {"fusionserve": "FusionServe", "litserve": "LitServe", "floor": "floor"}
    return {
        "command": "python -m bench.overhead.overhead_benchmark",
        "started": "2026-01-01T00:00:00+0000",
        "wall_s": 300.0,
        "machine": {
            "nproc": 2,
            "cpu_model": "test CPU",
            "git_commit": "0123456789abcdef",
            "app_dirty": False,
            "versions": {"python": "3.11.7", "main": {"uvicorn": "0.54.0"}},
            "uvicorn_main": {"http": "httptools", "loop": "uvloop"},
        },
        "plan": {
            "repeats": 3,
            "duration_s": 10.0,
            "warmup_s": 3.0,
            "concurrency": 64,
            "intra_op_threads": 1,
        },
        "request": {"image": "64x64 JPEG", "image_bytes": 2000, "texts": 4, "body_bytes": 2300},
        "bundle": "tiny",
        "systems": {key: {"label": labels[key]} for key in systems},
        "runs": runs,
    }


def three(system: str, rps: Sequence[float], cpu: Sequence[float], **kw: Any) -> list[Any]:
    return [record(system, i, r, c, **kw) for i, (r, c) in enumerate(zip(rps, cpu, strict=True))]


def rows(markdown: str) -> dict[str, list[str]]:
    """The table rows of ``markdown`` by their first cell (the first row of that name)."""
    found = {}
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            found.setdefault(cells[0], cells[1:])
    return found


def verdicts(runs: list[dict[str, Any]]) -> dict[str, str]:
    return {t["name"]: t["verdict"] for t in summarize(runs, SYSTEMS)["targets"]}


def base(
    ours_rps: float = 1000.0,
    theirs_rps: float = 100.0,
    ours_cpu: float = 0.4,
    theirs_cpu: float = 3.0,
    **kw: Any,
) -> list[dict[str, Any]]:
    return [
        *three("fusionserve", [ours_rps] * 3, [ours_cpu] * 3, **kw),
        *three("litserve", [theirs_rps] * 3, [theirs_cpu] * 3),
        *three("floor", [5000.0] * 3, [0.03] * 3),
    ]


def test_the_table_shows_medians_and_ranges_by_repeat() -> None:
    runs = [
        *three("fusionserve", [300.0, 250.0, 260.0], [1.2, 1.0, 1.1]),
        *three("litserve", [200.0] * 3, [1.5] * 3),
        *three("floor", [9000.0, 8000.0, 8500.0], [0.03, 0.028, 0.029]),
    ]
    table = rows(render(results(runs)))
    assert table["FusionServe"][:4] == [
        "260.0 (250.0-300.0)",
        "50.0",  # repeats that agree show the median alone
        "90.0",
        "1.100 (1.000-1.200)",
    ]
    assert table["FusionServe"][4] == "1.071"  # 1.1 - the floor's 0.029
    assert table["floor"][4] == "-"
    assert table["LitServe"][7] == "5"  # processes


def test_503s_are_summed_with_the_warm_ups_beside_them() -> None:
    runs = base(statuses={"200": 900, "503": 2, "504": 1}, warmup={"200": 50, "503": 3})
    table = rows(render(results(runs)))
    assert table["FusionServe"][5:7] == ["6 (warm-up: 9)", "3 (warm-up: 0)"]
    target = next(t for t in summarize(runs, SYSTEMS)["targets"] if "503" in t["name"])
    assert target["value"] == 15
    assert target["verdict"] == "missed"
    assert "6 in the measured windows + 9 in the warm-ups of 3 runs" in target["rests_on"]


@pytest.mark.parametrize(
    ("ours", "theirs", "verdict"), [(250.0, 100.0, "met"), (249.9, 100.0, "missed")]
)
def test_the_throughput_ratio_is_met_from_two_and_a_half_times(
    ours: float, theirs: float, verdict: str
) -> None:
    assert verdicts(base(ours_rps=ours, theirs_rps=theirs))[
        "FusionServe req/s / LitServe req/s"
    ] == (verdict)


@pytest.mark.parametrize(("ours", "verdict"), [(1.0, "met"), (1.001, "missed")])
def test_the_cpu_ratio_is_met_up_to_a_third(ours: float, verdict: str) -> None:
    found = verdicts(base(ours_cpu=ours, theirs_cpu=3.0))
    assert found["FusionServe server CPU per request / LitServe's"] == verdict


@pytest.mark.parametrize(("cpu", "verdict"), [(0.45, "met"), (0.451, "missed")])
def test_the_cpu_per_request_is_met_up_to_0_45_ms(cpu: float, verdict: str) -> None:
    assert verdicts(base(ours_cpu=cpu))["FusionServe server CPU per request"] == verdict


def test_no_503_meets_its_target_and_the_doc_says_so() -> None:
    runs = base()
    assert set(verdicts(runs).values()) == {"met"}
    section = render(results(runs))
    targets = rows(section)
    assert targets["FusionServe req/s / LitServe req/s"] == [
        ">= 2.5x",
        "10.000x",
        "medians 1000.0 / 100.0 req/s; within a repeat 10.000x",
        "**met**",
    ]
    assert targets["FusionServe server CPU per request"][1:] == [
        "0.400 ms",
        "median of the repeats (0.400 to 0.400 ms)",
        "**met**",
    ]
    assert targets["FusionServe 503 answers"][:2] == ["= 0", "0"]


def test_the_verdicts_rest_on_the_medians_not_on_one_repeat() -> None:
    runs = [
        *three("fusionserve", [300.0, 240.0, 260.0], [0.6, 0.4, 0.44]),
        *three("litserve", [100.0] * 3, [3.0] * 3),
    ]
    summary = summarize(runs, SYSTEMS)
    assert summary["fusionserve_over_litserve"]["throughput_rps"] == 2.6
    assert summary["fusionserve_over_litserve_by_repeat"]["throughput_rps"] == [3.0, 2.4, 2.6]
    found = {t["name"]: t["verdict"] for t in summary["targets"]}
    assert found["FusionServe req/s / LitServe req/s"] == "met"
    assert found["FusionServe server CPU per request"] == "met"  # median 0.44
    shown = rows(render(results(runs, ("fusionserve", "litserve"))))
    assert shown["FusionServe req/s / LitServe req/s"][1:3] == [
        "2.600x",
        "medians 260.0 / 100.0 req/s; within a repeat 2.400x to 3.000x",
    ]


def test_without_litserve_its_ratios_are_not_measured() -> None:
    runs = three("fusionserve", [300.0] * 3, [0.4] * 3)
    found = verdicts(runs)
    assert found["FusionServe req/s / LitServe req/s"] == "not measured"
    assert found["FusionServe server CPU per request / LitServe's"] == "not measured"
    assert found["FusionServe server CPU per request"] == "met"
    section = render(results(runs, ("fusionserve",)))
    assert "| FusionServe req/s / LitServe req/s | >= 2.5x | - |" in section


def test_a_failed_start_is_left_out_of_the_medians_and_shown() -> None:
    runs = [*base(), {"system": "litserve", "repeat": 3, "position": 0, "error": "exited"}]
    summary = summarize(runs, SYSTEMS)
    assert summary["systems"]["litserve"]["repeats"] == 3
    assert summary["systems"]["litserve"]["failed"] == 1
    assert "LitServe (1 of 4 runs failed to start)" in rows(render(results(runs)))
