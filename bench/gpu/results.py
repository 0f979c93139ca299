"""The GPU check's results file: one JSON object that every step updates in place, so that a
step that fails or is killed loses only its own figures.

``{"schema", "run": {...}, "steps": {NAME: {"status", "seconds", "limit_s", "note",
"result"}}}``; a step's status is ``running`` while it runs, then ``ok``, ``failed``,
``timed_out`` or ``skipped``.

Its command line is what bench/gpu_check.sh records with, standard library only (so that it
works before any environment is installed, with any Python 3.11):

    python -m bench.gpu.results begin  --out FILE --device cuda|cpu [--quick] [--command C]
    python -m bench.gpu.results record --out FILE --step NAME [--status S] [--seconds S]
                                       [--limit-s S] [--rc RC] [--note TEXT] [--summary TEXT]
    python -m bench.gpu.results close  --out FILE --step NAME --rc RC [--note TEXT]

``begin`` starts a fresh file; ``record`` writes a step the shell ran itself (install, the
fp16 build, the CUDA tests); ``close`` marks a step whose runner exited with ``RC`` != 0
without recording an outcome (killed at its time limit: timed out; else failed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness.paths import RESULTS_DIR

SCHEMA = 1
RESULTS = RESULTS_DIR / "gpu.json"
QUICK_RESULTS = RESULTS_DIR / "quick" / "gpu.json"
# What bench/gpu_check.sh runs, in order; the shell's own steps, then the runner's.
ALL_STEPS = (
    "install",
    "fp16_build",
    "cuda_tests",
    "scaling",
    "saturation",
    "memory",
    "batch_sweep",
)
FINISHED = ("ok", "failed", "timed_out", "skipped")
TIMEOUT_CODES = (124, 137, 143)  # timeout(1)'s own code, SIGKILL, SIGTERM


def load(path: Path) -> dict[str, Any]:
    """The results so far (an empty file's skeleton when there is none yet)."""
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    return {"schema": SCHEMA, "run": {}, "steps": {}}


def save(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a kill while writing leaves the previous file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def update_step(path: Path, step: str, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``step``'s record (None values leave a field as it is)."""
    data = load(path)
    record = data["steps"].setdefault(step, {})
    record.update({key: value for key, value in fields.items() if value is not None})
    save(path, data)
    return data


def update_run(path: Path, **fields: Any) -> None:
    """Merge ``fields`` into the run's description."""
    data = load(path)
    data["run"].update(fields)
    save(path, data)


def close_unfinished(path: Path, step: str, rc: int, note: str) -> str:
    """After the runner of ``step`` exited with ``rc`` != 0: mark the step ``timed_out`` or
    ``failed`` unless the runner recorded its outcome itself; the status it now has."""
    record = load(path)["steps"].get(step, {})
    if record.get("status") in FINISHED:
        return str(record["status"])
    status = "timed_out" if rc in TIMEOUT_CODES else "failed"
    update_step(path, step, status=status, rc=rc, note=note)
    return status


def begin(path: Path, **run: Any) -> None:
    """A fresh results file for a new run (the previous one's steps are dropped)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save(path, {"schema": SCHEMA, "run": {"started": started, **run}, "steps": {}})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu.results", description=(__doc__ or "").split("\n\n")[0]
    )
    actions = parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=RESULTS, help="results file")
    common.add_argument("--step", required=True, choices=ALL_STEPS)
    common.add_argument("--rc", type=int)
    common.add_argument("--note", default="")
    start = actions.add_parser("begin", parents=[], help="start a fresh results file")
    start.add_argument("--out", type=Path, default=RESULTS, help="results file")
    start.add_argument("--device", choices=("cuda", "cpu"), required=True)
    start.add_argument("--quick", action="store_true")
    start.add_argument("--command", default="", help="the command line to record")
    record = actions.add_parser("record", parents=[common], help="a step the shell ran")
    record.add_argument("--status", choices=FINISHED, help="default: left as it is")
    record.add_argument("--seconds", type=float)
    record.add_argument("--limit-s", type=float)
    record.add_argument("--summary", help="a one-line outcome (e.g. pytest's counts)")
    actions.add_parser("close", parents=[common], help="a step whose runner was killed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = args.out
    if args.action == "begin":
        begin(out, command=args.command, device=args.device, quick=args.quick)
    elif args.action == "record":
        fields = {"status": args.status, "seconds": args.seconds, "limit_s": args.limit_s}
        update_step(out, args.step, **fields, rc=args.rc, note=args.note, summary=args.summary)
    else:
        print(close_unfinished(out, args.step, args.rc or 1, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
