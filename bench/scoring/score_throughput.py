"""``fusionserve score`` against the in-process limit of the same bundle, and its peak
memory on 10x and 100x the rows (issue 29: rows/s >= 0.9x the limit; peak RSS within 10%).

``python -m bench.scoring.score_throughput [--rows 5000] [--rounds 3] [--quick]`` (about 8
minutes on 2 cores; ``--quick``: 500 rows, one round, about a minute).

The input: the suites' photos (``bench.harness.payloads``, 48 JPEG and PNG files from 640x480
to 1600x1200) written to a folder, and a CSV table whose row ``i`` pairs photo ``i mod 48``
with text ``i``: the in-process limit's request ``i``, so both sides decode the same images
and embed the same texts, none twice (the text cache never hits). Each round, in an order
flipped every round:

- score: ``fusionserve score`` on the default bundle in a child process, on ``--rows`` rows
  (100x) and on the first tenth of them (``--limit``, 10x), each into a fresh output folder.
  Its rows/s steady (the job's own figure: from the engine loaded to the last commit) and with
  start-up (rows over the process's wall time), and its peak RSS (``ru_maxrss`` of that child,
  from ``wait4``: the kernel's VmHWM when it exited).
- limit: ``python -m bench.harness.inprocess`` in a child process, the peer benchmark's system
  (c): decode pool + ``Pipeline.run``, no HTTP, its best batch size.

Both children get the same settings (the peer benchmark's ``COMMON_ENV``: ONNX Runtime
intra-op threads on every core, CPU) and as many preparing threads as cores. Writes
``bench/results/score-throughput.json`` (``--quick``: ``bench/results/quick/``) and prints the
table of ``bench.scoring.score_summary``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.paths import REPO_ROOT
from bench.harness.payloads import RequestSet, build_requests
from bench.harness.servers import COMMON_ENV
from bench.harness.session import bench_lock, logger, rotated
from bench.scoring.score_session import save_session
from bench.scoring.score_summary import parse_score_line, summarize, table

BUNDLE = REPO_ROOT / "models" / "default"
RESULTS_NAME = "score-throughput.json"
SIDES = ("score", "limit")
log = logger("score-throughput")


@dataclass(frozen=True)
class Plan:
    """What one session measures: ``rows`` (the 100x run; the 10x run scores a tenth),
    ``rounds`` of alternated runs, the limit's seconds per batch size and its batch sizes,
    the preparing threads of both sides, and the longest a child may run."""

    rows: int = 5000
    rounds: int = 3
    limit_duration_s: float = 8.0
    limit_batch_sizes: tuple[int, ...] = (1, 4, 8, 16, 32)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    child_timeout_s: float = 1800.0

    @classmethod
    def quick(cls, rows: int | None) -> Plan:
        """One round of 500 rows; the limit at batch sizes 4 and 8 for 2 s each."""
        return cls(rows=rows or 500, rounds=1, limit_duration_s=2.0, limit_batch_sizes=(4, 8))


def write_input(folder: Path, requests: RequestSet, rows: int) -> Path:
    """The photos as files under ``folder/images`` and ``folder/input.csv`` naming them:
    row ``i`` is request ``i``'s image and text."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    names = []
    for number, part in enumerate(requests.images):
        name = f"images/{number:02d}.{'jpg' if part.image_format == 'JPEG' else 'png'}"
        (folder / name).write_bytes(part.data)
        names.append(name)
    table = folder / "input.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "text"])
        for i in range(rows):
            writer.writerow([f"r{i}", names[i % len(names)], requests.inputs(i)[1]])
    return table


def _environment() -> dict[str, str]:
    return {**os.environ, **COMMON_ENV, "FUSIONSERVE_BUNDLE_PATH": str(BUNDLE)}


def _run_child(command: list[str], log_path: Path, timeout_s: float) -> tuple[int, float, int]:
    """Run ``command`` (output to ``log_path``); its exit code, wall seconds and peak RSS
    (KiB, from ``wait4``). Killed past ``timeout_s``."""
    started = time.perf_counter()
    with log_path.open("wb") as out:
        child = subprocess.Popen(
            command, cwd=REPO_ROOT, env=_environment(), stdout=out, stderr=subprocess.STDOUT
        )
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                break
            if time.perf_counter() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, wall, int(usage.ru_maxrss)


def score_run(plan: Plan, table: Path, work: Path, rows: int, scale: str) -> dict[str, Any]:
    """One ``fusionserve score`` child on the first ``rows`` rows of ``table``."""
    output = work / f"out-{scale}"
    command = [
        sys.executable, "-m", "app", "score",
        "--bundle", str(BUNDLE), "--device", "cpu",
        "--input", str(table), "--output", str(output), "--limit", str(rows),
        "--workers", str(plan.workers), "--force", "--progress-every", "3600",
    ]  # fmt: skip
    log_path = work / f"score-{scale}.log"
    code, wall, rss = _run_child(command, log_path, plan.child_timeout_s)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        raise RuntimeError(f"fusionserve score exited {code}:\n{text[-2000:]}")
    line = parse_score_line(text)
    return {
        "scale": scale,
        "rows": line["rows"],
        "ok": line["ok"],
        "error": line["error"],
        "rows_per_s": line["rows_per_s"],
        "job_s": line["seconds"],
        "wall_s": round(wall, 3),
        "startup_s": round(wall - line["seconds"], 3),
        "rows_per_s_with_startup": round(line["rows"] / wall, 3),
        "peak_rss_kib": rss,
    }


def limit_run(plan: Plan, work: Path) -> dict[str, Any]:
    """One ``bench.harness.inprocess`` child: the limit at its best batch size."""
    result_path = work / "limit.json"
    command = [
        sys.executable, "-m", "bench.harness.inprocess",
        "--duration", str(plan.limit_duration_s), "--latency-count", "1",
        "--decode-threads", str(plan.workers),
        "--batch-sizes", *map(str, plan.limit_batch_sizes), "--json", str(result_path),
    ]  # fmt: skip
    log_path = work / "limit.log"
    code, wall, rss = _run_child(command, log_path, plan.child_timeout_s)
    if code != 0:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"the in-process limit exited {code}:\n{text[-2000:]}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    return {
        "items_per_s": result["best_items_per_s"],
        "batch_size": result["best_batch_size"],
        "throughput": result["throughput"],
        "wall_s": round(wall, 3),
        "peak_rss_kib": rss,
    }


def measure(plan: Plan, work: Path) -> dict[str, Any]:
    """Every round's runs, alternated: score (100x, then 10x) and the limit."""
    requests = build_requests()
    if plan.rows > len(requests):
        raise ValueError(f"--rows is at most {len(requests)} (distinct texts in the set)")
    table = write_input(work, requests, plan.rows)
    score_runs: list[dict[str, Any]] = []
    limit_runs: list[dict[str, Any]] = []
    for turn in range(plan.rounds):
        for side in rotated(SIDES, turn):
            if side == "score":
                for rows, scale in ((plan.rows, "100x"), (max(1, plan.rows // 10), "10x")):
                    run = score_run(plan, table, work, rows, scale)
                    log(
                        f"round {turn + 1} score {scale}: {run['rows_per_s']} rows/s steady, "
                        f"{run['rows_per_s_with_startup']} with start-up, "
                        f"peak RSS {run['peak_rss_kib'] // 1024} MiB"
                    )
                    score_runs.append({"round": turn + 1, **run})
            else:
                run = limit_run(plan, work)
                log(f"round {turn + 1} limit: {run['items_per_s']} items/s (b={run['batch_size']})")
                limit_runs.append({"round": turn + 1, **run})
    return {"score": score_runs, "limit": limit_runs}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scoring.score_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, help="rows of the 100x run (default 5000)")
    parser.add_argument("--rounds", type=int, help="alternated rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="500 rows, one short round")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args()
    plan = Plan.quick(args.rows) if args.quick else Plan(rows=args.rows or Plan.rows)
    if args.rounds:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds})
    command = " ".join(["python -m bench.scoring.score_throughput", *sys.argv[1:]])
    with bench_lock(command), tempfile.TemporaryDirectory(prefix="score-bench-") as work:
        runs = measure(plan, Path(work))
    summary = summarize(runs["score"], runs["limit"])
    save_session(RESULTS_NAME, command, plan, runs, summary, table(summary), args.out, args.quick)


if __name__ == "__main__":
    main()
