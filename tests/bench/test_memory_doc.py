"""bench.memory.memory_doc on small hand-made results: which figures each section shows, and
how they are aggregated and formatted."""

from __future__ import annotations

from typing import Any

import pytest

from app.config.settings import Settings
from bench.memory.decode_memory_table import SETTLE_S, settle_s
from bench.memory.memory_doc import (
    render_allocators,
    render_decode_memory,
    render_sizing,
    sizing_terms_mb,
)


def burst(
    case: str,
    concurrency: int,
    peak: float,
    settled: float,
    statuses: dict[str, int],
    back: float | None = 0.02,
    file_bytes: int = 1_000_000,
) -> dict[str, Any]:
    return {
        "case": case,
        "concurrency": concurrency,
        "file_bytes": file_bytes,
        "statuses": statuses,
        "503_without_retry_after": 0,
        "burst_s": 1.0,
        "peak_rss_mb": peak,
        "settled_rss_mb": settled,
        "back_within_100mb_after_s": back,
    }


def memory_results(command: str = "python -m bench.memory.decode_memory") -> dict[str, Any]:
    before = [
        burst("png-rgba", 4, 2000.0, 1500.0, {"200": 4}, back=None, file_bytes=240_000),
        burst("webp", 4, 3100.5, 1600.25, {"200": 4}, back=None, file_bytes=86_000),
        burst("png-rgba", 8, 2100.0, 1700.0, {"200": 6, "504 deadline_exceeded": 2}, None),
        burst("webp", 8, 3200.0, 1650.0, {"200": 5, "504 deadline_exceeded": 3}, None),
    ]
    after = [
        burst("png-rgba", 4, 600.0, 380.0, {"200": 4}, back=0.01, file_bytes=2_270_000),
        burst("webp", 4, 390.0, 385.0, {"413 image_too_large": 4}, back=0.04),
        burst("png-rgba", 8, 610.0, 395.0, {"200": 5, "503 memory_busy": 3}, back=0.06),
        burst("webp", 8, 400.0, 390.0, {"413 image_too_large": 8}, back=0.03),
    ]
    return {
        "command": command,
        "machine": {"cpus": 2, "python": "3.11.7"},
        "max_pixels": 50_000_000,
        "servers": {
            "before": {"warm_rss_mb": 381.6, "bursts": before},
            "after": {"warm_rss_mb": 366.2, "bursts": after},
        },
        "decode_latency": {
            "images": 48,
            "rounds": 6,
            "median_ms": {
                "before": {"PNG": 55.7, "JPEG": 7.77},
                "after": {"PNG": 55.6, "JPEG": 8.03},
            },
            "after_over_before": {"PNG": 0.998, "JPEG": 1.034},
        },
    }


INSTRUCTIONS = {"photos": {"JPEG": 12, "PNG": 4}, "after_over_before": {"JPEG": 0.9978, "PNG": 1.0}}


def rows(markdown: str) -> list[list[str]]:
    """The cells of the Markdown table rows below the header."""
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def test_decode_memory_has_a_row_per_burst_size_with_the_worst_burst() -> None:
    text = render_decode_memory(memory_results(), INSTRUCTIONS)
    assert rows(text) == [
        ["4", "3100.5", "1600.2", "8 x 200", "600.0", "385.0", "4 x 200, 4 x 413 (webp)"],
        [
            "8",
            "3200.0",
            "1700.0",
            "11 x 200, 5 x 504 (png-rgba, webp)",
            "610.0",
            "395.0",
            "5 x 200, 8 x 413 (webp), 3 x 503 (png-rgba)",
        ],
    ]


def test_decode_memory_states_the_run_and_how_soon_memory_came_back() -> None:
    text = render_decode_memory(memory_results(), INSTRUCTIONS)
    assert "Measured on 2 cores" in text
    assert "`python -m bench.memory.decode_memory`" in text
    assert "of 0.1-2.3 MB that decode to 49 megapixels" in text  # 7000 x 7000
    assert "`png-rgba`, `webp`" in text
    assert "Warmed up at 381.6 MB (`before`), 366.2 MB (`after`)." in text
    assert "after 0 of 4 bursts (`before`) and 4 of 4 bursts (`after`, at most 0.06 s" in text


def test_decode_memory_quotes_decode_times_and_instructions_as_recorded() -> None:
    text = render_decode_memory(memory_results(), INSTRUCTIONS)
    assert "`before` JPEG 7.77, PNG 55.7; `after` JPEG 8.03, PNG 55.6" in text
    assert "median over 6 alternated runs" in text
    assert "JPEG **1.034x**, PNG **0.998x**" in text
    assert "the first 12 JPEG and 4 PNG photos" in text
    assert "JPEG **0.9978x**, PNG **1.0x**" in text


def test_decode_memory_without_a_baseline_has_no_ratio() -> None:
    results = memory_results()
    del results["servers"]["before"]
    del results["decode_latency"]["median_ms"]["before"]
    del results["decode_latency"]["after_over_before"]
    text = render_decode_memory(results, INSTRUCTIONS)
    assert rows(text)[0] == ["4", "600.0", "385.0", "4 x 200, 4 x 413 (webp)"]
    assert "decode_latency.after_over_before" not in text


@pytest.mark.parametrize(
    ("command", "extra", "expected"),
    [
        ("python -m bench.memory.decode_memory", {}, SETTLE_S),
        ("python -m bench.memory.decode_memory --settle-s 2.5", {}, 2.5),
        ("python -m bench.memory.decode_memory --settle-s=3", {}, 3.0),
        ("python -m bench.memory.decode_memory --settle-s 2.5", {"settle_s": 7.0}, 7.0),
    ],
)
def test_the_settle_time_is_recorded_or_read_from_the_command(
    command: str, extra: dict[str, float], expected: float
) -> None:
    results = {**memory_results(command), **extra}
    assert settle_s(results) == expected
    assert f"RSS {expected:g} s after, MB" in render_decode_memory(results, INSTRUCTIONS)


def test_sizing_sums_the_terms_with_the_margin() -> None:
    settings = Settings.model_construct(
        text_cache_size=1000, decode_memory_mb=100, body_memory_mb=10, max_in_flight=10
    )
    terms = sizing_terms_mb(300.0, settings)
    waiting = 10 * (3 * 224 * 224 * 4 + 2 * 128 * 8) / 1e6  # 10 items, tensor and tokens each
    assert terms == pytest.approx(
        {
            "warmed up": 300.0,
            "text cache": 4.096,
            "decodes": 104.8576,
            "waiting items": waiting,
            "bodies": 41.94304,
        }
    )
    memory = memory_results()
    memory["servers"]["after"]["warm_rss_mb"] = 300.0
    text = render_sizing(memory, settings)
    assert "**300.0 MB**" in text
    # 1.1 x 456.938 MB
    assert (
        "1.1 x (300.0 + 4.1 text cache + 104.9 decodes + 6.0 waiting items + 41.9 bodies) MB "
        "= **0.50 GB**"
    ) in text


def allocator_file(
    env: list[str], before_settled: list[float], back: list[float | None], medians: dict[str, Any]
) -> dict[str, Any]:
    flags = "".join(f" --baseline-env {setting}" for setting in env)
    before = [
        burst(f"case{i}", 16, 600.0, settled, {"200": 16}, back=t)
        for i, (settled, t) in enumerate(zip(before_settled, back, strict=True))
    ]
    after = [burst(f"case{i}", 16, 600.0, 400.0 + i, {"200": 16}) for i in range(2)]
    return {
        "command": f"python -m bench.memory.decode_memory --concurrency 16{flags}",
        "machine": {"cpus": 2},
        "servers": {
            "before": {"warm_rss_mb": 350.0, "bursts": before},
            "after": {"warm_rss_mb": 366.0 + len(env) / 10, "bursts": after},
        },
        "decode_latency": {"median_ms": medians},
    }


def test_allocators_has_a_row_per_file_worst_first_and_the_trimming_row() -> None:
    files = {
        "arena.json": allocator_file(
            ["MALLOC_ARENA_MAX=2"],
            [450.0, 595.2],
            [0.03, None],
            {"before": {"JPEG": 7.0, "PNG": 50.0}, "after": {"JPEG": 7.0, "PNG": 40.0}},
        ),
        "no-trim.json": allocator_file(
            [],
            [700.0, 710.8],
            [None, None],
            {"before": {"JPEG": 9.0, "PNG": 50.0}, "after": {"JPEG": 6.0, "PNG": 50.0}},
        ),
        "jemalloc.json": allocator_file(
            ["LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "MALLOC_CONF=a:1"],
            [380.0, 384.1],
            [0.02, 0.02],
            {"before": {"JPEG": 7.0, "PNG": 50.0}, "after": {"JPEG": 7.0, "PNG": 50.0}},
        ),
    }
    text = render_allocators(files)
    assert "bursts of 16 concurrent near-cap uploads of 2 formats (`case0`, `case1`)" in text
    assert "(5 s after a burst)" in text
    assert rows(text) == [
        [
            "nothing set: glibc keeps it",
            "350.0",
            "710.8",
            "2 of 2",
            "1.50x / 1.00x",
            "`no-trim.json`",
        ],
        ["`MALLOC_ARENA_MAX=2`", "350.0", "595.2", "1 of 2", "1.00x / 1.25x", "`arena.json`"],
        [
            "`LD_PRELOAD=libjemalloc.so.2`, `MALLOC_CONF=a:1`",
            "350.0",
            "384.1",
            "0 of 2",
            "1.00x / 1.00x",
            "`jemalloc.json`",
        ],
        [
            "**`malloc_trim` after large decodes and bursts** (the `after` server of each file)",
            "366.0-366.2",
            "**401.0**",
            "0 of 6",
            "**1.00x / 1.00x**",
            "all 3",
        ],
    ]
