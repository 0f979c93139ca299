"""``fusionserve score`` on its local engine against its Ray engine on the same machine, and
the per-stage rates that size a cluster (issue 29, items 3 and 4).

``python -m bench.scoring.score_engines [--rows 2000] [--rounds 3] [--quick]`` (about 10
minutes on 2 cores; ``--quick``: 300 rows, one round).

The input is ``bench.scoring.score_throughput``'s (the suites' 48 photos, distinct titles).
Each round, in an order rotated every round, three ``fusionserve score`` children on the
default bundle, each into a fresh output folder:

- ``local``: the local engine, as many preparing threads as cores;
- ``ray-1node``: ``--engine ray`` without an address: the job starts Ray on this machine (its
  CPUs: the cores), one model actor of one CPU, preparing tasks on the CPUs left;
- ``ray-2nodes``: ``--engine ray`` on a cluster this benchmark starts (two raylets of one
  logical CPU each on the same cores: the model actor on one node, preparing tasks on the
  other, their rows through the object stores).

Each engine's rows/s is its summary line's (from the job's start to its last commit: the
local engine's after its model loaded, Ray's after it connected, its stages' start-up
counted) and with start-up (rows over the child's wall time). Then, in this process, the
stages apart on one CPU each (``bench.scoring.stage_rates``). Writes
``bench/results/score-engines.json`` (``--quick``: ``bench/results/quick/``) and prints the
table of ``bench.scoring.engines_summary``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.paths import REPO_ROOT
from bench.harness.payloads import build_requests
from bench.harness.servers import COMMON_ENV
from bench.harness.session import bench_lock, logger, rotated
from bench.scoring.engines_summary import ENGINES, summarize, table
from bench.scoring.score_session import save_session
from bench.scoring.score_summary import parse_score_line
from bench.scoring.score_throughput import BUNDLE, write_input
from bench.scoring.stage_rates import stage_rates

RESULTS_NAME = "score-engines.json"
log = logger("score-engines")


@dataclass(frozen=True)
class Plan:
    """What one session measures: ``rows`` per run, ``rounds`` of rotated runs, the rows
    the stage rates are measured on, and the longest a child may run."""

    rows: int = 2000
    rounds: int = 3
    rate_rows: int = 400
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    child_timeout_s: float = 1800.0

    @classmethod
    def quick(cls, rows: int | None) -> Plan:
        """One round of 300 rows; the stage rates on 100."""
        return cls(rows=rows or 300, rounds=1, rate_rows=100)


@contextmanager
def two_nodes() -> Iterator[str]:
    """A two-node cluster on this machine (one logical CPU per node); its address."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield str(cluster.address)
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]


def engine_run(plan: Plan, table: Path, work: Path, engine: str) -> dict[str, Any]:
    """One ``fusionserve score`` child with ``engine`` (for ``ray-2nodes``, on a cluster
    started for that run and stopped after it: no other Ray runs on the machine while
    ``ray-1node`` starts its own)."""
    if engine == "ray-2nodes":
        with two_nodes() as address:
            return _child_run(plan, table, work, engine, ["--ray-address", address])
    return _child_run(plan, table, work, engine, [])


def _child_run(
    plan: Plan, table: Path, work: Path, engine: str, extra: list[str]
) -> dict[str, Any]:
    output = work / f"out-{engine}"
    command = [
        sys.executable, "-m", "app", "score",
        "--bundle", str(BUNDLE), "--device", "cpu",
        "--input", str(table), "--output", str(output), "--limit", str(plan.rows),
        "--force", "--progress-every", "3600",
    ]  # fmt: skip
    environment = {**os.environ, **COMMON_ENV, "FUSIONSERVE_BUNDLE_PATH": str(BUNDLE)}
    if engine == "local":
        command += ["--workers", str(plan.cores)]
    else:
        command += ["--engine", "ray", *extra]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=plan.child_timeout_s,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{engine} exited {done.returncode}:\n{done.stderr[-2000:]}")
    line = parse_score_line(done.stdout)
    return {
        "engine": engine,
        "rows": line["rows"],
        "error": line["error"],
        "rows_per_s": line["rows_per_s"],
        "job_s": line["seconds"],
        "wall_s": round(wall, 3),
        "rows_per_s_with_startup": round(line["rows"] / wall, 3),
    }


def measure(plan: Plan, work: Path) -> dict[str, Any]:
    """Every round's engine runs, rotated, then the stage rates."""
    requests = build_requests()
    if plan.rows > len(requests):
        raise ValueError(f"--rows is at most {len(requests)} (distinct texts in the set)")
    table = write_input(work, requests, plan.rows)
    runs: list[dict[str, Any]] = []
    for turn in range(plan.rounds):
        for engine in rotated(list(ENGINES), turn):
            run = engine_run(plan, table, work, engine)
            log(
                f"round {turn + 1} {engine}: {run['rows_per_s']} rows/s steady, "
                f"{run['rows_per_s_with_startup']} with start-up"
            )
            runs.append({"round": turn + 1, **run})
    rates = stage_rates(BUNDLE, table, plan.rate_rows)
    log(
        f"stage rates: prepare {rates['prepare_rows_per_s_per_core']} rows/s per core, "
        f"model {rates['model_rows_per_s_per_cpu']} rows/s per CPU"
    )
    return {"engines": runs, "stage_rates": rates}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scoring.score_engines", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, help="rows per run (default 2000)")
    parser.add_argument("--rounds", type=int, help="rotated rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="300 rows, one round")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args()
    plan = Plan.quick(args.rows) if args.quick else Plan(rows=args.rows or Plan.rows)
    if args.rounds:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds})
    command = " ".join(["python -m bench.scoring.score_engines", *sys.argv[1:]])
    with bench_lock(command), tempfile.TemporaryDirectory(prefix="score-engines-") as work:
        measured = measure(plan, Path(work))
    summary = summarize(measured["engines"], measured["stage_rates"])
    save_session(
        RESULTS_NAME, command, plan, measured, summary, table(summary), args.out, args.quick
    )


if __name__ == "__main__":
    main()
