"""bench.peers.sizing_doc on small hand-made results: the table's figures (medians from the
summary, spreads from the runs, memory from the soak samples), the replica count of the worked
example, and the Deployment's requests it multiplies."""

from __future__ import annotations

from typing import Any

import pytest

from bench.peers.sizing_doc import (
    Requests,
    SizingError,
    cpu_cores,
    memory_gib,
    per_replica_rps,
    render,
    replica_requests,
    replicas_for,
)

TWO_CORES = Requests(cores=2, memory_gib=1)


def run(
    saturation: float,
    p99_ms: float,
    single_ms: float,
    rss_kib: int,
    startup_s: float,
    system: str = "a",
) -> dict[str, Any]:
    return {
        "system": system,
        "startup_s": startup_s,
        "rss_kib_after_warmup": {"main": rss_kib, "tree": rss_kib},
        "saturation": {"throughput_rps": saturation},
        "open": {"latency_ms": {"p50": 40.0, "p99": p99_ms}},
        "single": {"latency_ms": {"p50": single_ms}},
    }


def peers(saturation_rps: float = 50.0, open_fraction: float = 0.7) -> dict[str, Any]:
    """Three FusionServe runs (one failed), a peer's run, and the summary of FusionServe's."""
    return {
        "plan": {"open_fraction": open_fraction},
        "machine": {"nproc": 2},
        "started": "2027-01-05T10:00:00+0000",
        "systems": {"a": {"label": "FusionServe (batching)"}, "d": {"label": "LitServe"}},
        "raw": {
            "systems": [
                run(48.04, 150.0, 17.6, 400_000, 1.21),
                run(9.0, 9000.0, 90.0, 900_000, 9.0, system="d"),
                run(50.0, 260.0, 19.4, 410_000, 1.24),
                {"system": "a", "error": "RuntimeError('died')", "startup_s": 0.1},
                run(53.26, 410.0, 22.5, 420_000, 1.86),
            ]
        },
        "summary": {
            "systems": {
                "a": {
                    "saturation_rps": saturation_rps,
                    "open_p99_ms": 260.0,
                    "single_p50_ms": 19.4,
                    "rss_mib_tree": 410_000 / 1024,
                    "startup_s": 1.24,
                }
            },
            "open_rate_rps": [33.628, 35.0, 37.282],
        },
    }


def soak(samples_mb: list[float], duration_s: float = 600.0, startup_s: float = 2.04) -> Any:
    return {
        "rate_rps": 30.0,
        "duration_s": duration_s,
        "startup_s": startup_s,
        "rss_samples": [[5.0 * i, round(mb * 1e6)] for i, mb in enumerate(samples_mb)],
    }


SOAKS = {
    "soak.json": soak([430.2, 480.6, 470.0]),
    "soak-repeated-texts.json": soak([425.4, 440.0], startup_s=2.46),
}


def table(markdown: str) -> dict[str, str]:
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]
    return {first: second for first, second in cells}


def test_the_table_has_the_medians_and_the_spreads_of_fusionservice_runs() -> None:
    # The peer's run (d) and FusionServe's failed run are in the results, not in the spreads.
    rows = table(render(peers(), SOAKS, TWO_CORES))
    assert rows["One 2-core CPU replica"] == "Measured (recorded run of 2027-01-05, medians of 3)"
    assert rows["Throughput at saturation"] == (
        "50.0 requests/s (48.0-53.3 by repeat; one image + text each)"
    )
    assert rows["p99 latency at 70% of saturation (34-37 requests/s)"] == (
        "0.26 s (0.15-0.41 by repeat)"
    )
    assert rows["One request alone"] == "19 ms median (18-22 by repeat)"
    # 410000 KiB = 419.8 MB; 400000 and 420000 KiB = 409.6 and 430.1 MB. Soak: every sample of
    # both runs, 425.4 to 480.6 MB.
    assert rows["Resident memory"] == (
        "420 MB after warm-up (410-430 by repeat); 425-481 MB under a 10-minute soak at 30 "
        "requests/s (2 runs)"
    )
    assert rows["Start-up, process started to ready (load + warm-up)"] == (
        "1.2 s median (1.2-1.9 by repeat); 2.0-2.5 s in the soak runs"
    )


def test_the_worked_example_divides_by_the_planned_rate_per_replica() -> None:
    # 70% of 50 req/s = 35 per replica: 400 / 35 = 11.4 -> 12, plus one spare.
    text = render(peers(), SOAKS, Requests(cores=2, memory_gib=1.5))
    assert "peak requests/s ÷ 35 (the HPA's target of 70% of the saturation rate: 50.0 x 0.7" in (
        text
    )
    assert "400 requests/s: 12 + 1 = 13 replicas, 26 cores and 19.5 GiB of requests" in text
    assert "(2 cores and 1.5 GiB each" in text
    assert "`maxReplicas` at least 13." in text
    assert "measure the new size" not in text


def test_the_planned_rate_is_rounded_down() -> None:
    assert per_replica_rps(peers(saturation_rps=60.8)) == 42  # 42.56
    assert per_replica_rps(peers(saturation_rps=60.8, open_fraction=0.5)) == 30  # 30.4
    with pytest.raises(SizingError):
        per_replica_rps(peers(saturation_rps=1.2))


@pytest.mark.parametrize(
    ("peak", "rate", "replicas"), [(400, 42, 11), (420, 42, 11), (421, 42, 12), (1, 42, 2)]
)
def test_replicas_cover_the_peak_plus_one(peak: float, rate: int, replicas: int) -> None:
    assert replicas_for(peak, rate) == replicas


def test_a_replica_size_other_than_the_measured_one_is_flagged() -> None:
    text = render(peers(), SOAKS, Requests(cores=4, memory_gib=2))
    assert "requests 4 cores per replica, but the replica above was measured on 2" in text
    assert "13 replicas, 52 cores and 26 GiB" in text


def test_no_completed_fusionserve_run_is_an_error() -> None:
    results = peers()
    results["raw"]["systems"] = [r for r in results["raw"]["systems"] if r["system"] != "a"]
    with pytest.raises(SizingError, match="no completed"):
        render(results, SOAKS, TWO_CORES)
    del results["summary"]["systems"]["a"]
    with pytest.raises(SizingError, match="no system 'a'"):
        render(results, SOAKS, TWO_CORES)


DEPLOYMENT = """
spec:
  template:
    spec:
      containers:
        - name: fusionserve
          resources:
            # a comment
            limits:
              cpu: "4"
              memory: 2Gi
            requests:
              memory: 1536Mi  # trailing comment
              cpu: 1500m
          startupProbe:
            periodSeconds: 2
"""


def test_the_requests_block_is_read_not_the_limits() -> None:
    assert replica_requests(DEPLOYMENT) == Requests(cores=1.5, memory_gib=1.5)
    with pytest.raises(SizingError):
        replica_requests(DEPLOYMENT.replace("requests:", "other:"))
    with pytest.raises(SizingError):
        replica_requests(DEPLOYMENT.replace("cpu: 1500m", "gpu: 1"))


@pytest.mark.parametrize(
    ("quantity", "cores"), [("2", 2.0), ('"2"', 2.0), ("1500m", 1.5), ("0.5", 0.5)]
)
def test_cpu_quantities(quantity: str, cores: float) -> None:
    assert cpu_cores(quantity) == cores


@pytest.mark.parametrize(
    ("quantity", "gib"),
    [("1Gi", 1.0), ("512Mi", 0.5), ("1048576Ki", 1.0), (str(2**31), 2.0), ("1G", 1e9 / 2**30)],
)
def test_memory_quantities(quantity: str, gib: float) -> None:
    assert memory_gib(quantity) == pytest.approx(gib)


def test_an_unknown_memory_unit_is_an_error() -> None:
    with pytest.raises(SizingError):
        memory_gib("1Ti")
