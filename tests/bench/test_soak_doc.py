"""bench.soak.soak_doc on small hand-made results: a row per run, with its figures formatted
as the doc shows them."""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak.soak_doc import TEXTS, render, saturation, texts


def run(
    command: str = "python -m bench.soak.soak_benchmark --duration 300 --rate 30",
    growth: float = 36.5,
    passed: bool = True,
    cache: tuple[int, int] = (1021, 9985),
    statuses: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "command": command,
        "machine": {"cpus": 2},
        "rate_rps": 30.0,
        "duration_s": 300.0,
        "memory": {
            "warm_rss_mb": 422.9,
            "peak_rss_mb": 466.8,
            "end_rss_mb": 422.9 + growth,
            "growth_mb": growth,
            "trend_mb_per_min": 4.1,
            "bar_mb": 50.0,
            "passed": passed,
        },
        "text_cache_entries": {"start": cache[0], "end": cache[1]},
        "load": {"status_counts": statuses or {"200": 10185, "503": 15}},
    }


def rows(markdown: str) -> list[list[str]]:
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def test_a_row_per_run_with_its_figures() -> None:
    runs = {
        "soak.json": run(),
        "repeated.json": run(
            command="python -m bench.soak --texts 500 --out x.json",
            growth=-8.0,
            cache=(500, 500),
            statuses={"200": 10200},
        ),
    }
    text = render(runs, "FusionServe (batching)", 60.0)
    assert (
        "saturation rate of FusionServe (batching) in [benchmarks.md](benchmarks.md) (60.0" in text
    )
    assert rows(text) == [
        [
            "10000",
            "30 (50%)",
            "300",
            "422.9 / 466.8 / 459.4",
            "**+36.5** (bar 50: pass)",
            "+4.1",
            "1021 -> 9985",
            "10185 x 200, 15 x 503",
            "[soak.json](../bench/results/soak.json)",
        ],
        [
            "500",
            "30 (50%)",
            "300",
            "422.9 / 466.8 / 414.9",
            "**-8.0** (bar 50: pass)",
            "+4.1",
            "500 -> 500",
            "10200 x 200",
            "[repeated.json](../bench/results/repeated.json)",
        ],
    ]


def test_a_failed_run_says_so() -> None:
    text = render({"soak.json": run(growth=61.2, passed=False)}, "FusionServe", 60.0)
    assert "**+61.2** (bar 50: **fail**)" in text


@pytest.mark.parametrize(
    ("command", "extra", "expected"),
    [
        ("python -m bench.soak.soak_benchmark", {}, TEXTS),
        ("python -m bench.soak.soak_benchmark --texts 500", {}, 500),
        ("python -m bench.soak.soak_benchmark --texts 500", {"texts": 20}, 20),
    ],
)
def test_distinct_texts_are_recorded_or_read_from_the_command(
    command: str, extra: dict[str, int], expected: int
) -> None:
    assert texts({**run(command), **extra}) == expected


def test_saturation_is_fusionservice_default_system_of_the_peer_results() -> None:
    peers = {
        "systems": {"a": {"label": "FusionServe (batching)"}, "d": {"label": "LitServe"}},
        "summary": {"systems": {"a": {"saturation_rps": 60.8}, "d": {"saturation_rps": 45.0}}},
    }
    assert saturation(peers) == ("FusionServe (batching)", 60.8)
