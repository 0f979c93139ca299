"""The measurement steps of bench/gpu_check.sh, run in the GPU environment.

    python -m bench.gpu.gpu_check describe --out FILE
    python -m bench.gpu.gpu_check run --out FILE --steps scaling,saturation,memory,batch_sweep
        [--device cuda|cpu] [--quick] [--limit-s N] [--logs DIR] [--bundle DIR]
        [--fp16-bundle DIR] [--port N]

``describe`` adds the machine, the GPU and ONNX Runtime's providers to a results file
(``bench.gpu.results begin`` started it); ``run`` runs each step named
(``bench.gpu.plan.STEPS``), recording it as running, then its outcome and figures, and goes
on past a failing one. SIGTERM (the shell's time limit) stops the step in hand, stops its
server and records it as timed out. ``--quick``: short runs, workers 1 and 2, few requests;
with ``--device cpu`` that is how a CPU machine tests the script.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, cast

from bench.gpu import gpu_memory, results
from bench.gpu.batch_sweep import measure_sweep
from bench.gpu.memory_growth import measure_memory
from bench.gpu.plan import STEPS, Device, Plan
from bench.gpu.saturation import measure_saturation
from bench.gpu.scaling import measure_scaling
from bench.harness.session import git_head, logger, machine_brief

Measure = Callable[[Plan, Path], dict[str, Any]]
MEASURES: dict[str, Measure] = {
    "scaling": measure_scaling,
    "saturation": measure_saturation,
    "memory": measure_memory,
    "batch_sweep": measure_sweep,
}
log = logger("gpu-check")


class Terminated(BaseException):
    """SIGTERM (the shell's time limit) arrived during a step."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise Terminated


def runtime_info() -> dict[str, Any]:
    """ONNX Runtime's version and providers in the environment that runs the steps."""
    import onnxruntime as ort

    version: str = ort.__version__
    providers: list[str] = ort.get_available_providers()
    return {"onnxruntime": version, "providers": providers}


def describe(out: Path) -> None:
    """The machine, the GPU and ONNX Runtime, added to the run's record."""
    results.update_run(
        out,
        machine=machine_brief(),
        gpu=gpu_memory.gpu_description(),
        runtime=runtime_info(),
        git_commit=git_head(),
    )


def run_step(name: str, plan: Plan, out: Path, logs: Path, limit_s: float | None) -> bool:
    """One measurement step, its outcome recorded whatever happens; True when it succeeded."""
    log(f"{name}: started (limit {limit_s or '-'} s)")
    results.update_step(out, name, status="running", limit_s=limit_s, note="")
    started = time.monotonic()
    try:
        result = MEASURES[name](plan, logs)
    except Terminated:
        seconds = round(time.monotonic() - started, 1)
        note = "stopped at its time limit (SIGTERM)"
        results.update_step(out, name, status="timed_out", seconds=seconds, note=note)
        raise
    except Exception as error:
        seconds = round(time.monotonic() - started, 1)
        note = f"{type(error).__name__}: {error}"[-2000:]
        log(f"{name}: failed after {seconds} s: {note}\n{traceback.format_exc()}")
        results.update_step(out, name, status="failed", seconds=seconds, note=note)
        return False
    seconds = round(time.monotonic() - started, 1)
    results.update_step(out, name, status="ok", seconds=seconds, result=result)
    log(f"{name}: done in {seconds} s")
    return True


def _plan(args: argparse.Namespace) -> Plan:
    device = cast(Device, args.device)
    plan = Plan.quick_plan(device) if args.quick else Plan(device=device)
    return plan.located(args.bundle, args.fp16_bundle, args.port)


def _steps(text: str) -> list[str]:
    steps = [step.strip() for step in text.split(",") if step.strip()]
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        raise SystemExit(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    return steps


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu.gpu_check", description=(__doc__ or "").split("\n\n")[0]
    )
    actions = parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=results.RESULTS, help="results file")
    actions.add_parser("describe", parents=[common], help="record the machine and runtime")
    run = actions.add_parser("run", parents=[common], help="run measurement steps")
    run.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    run.add_argument("--quick", action="store_true", help="short runs, workers 1 and 2")
    run.add_argument("--steps", type=_steps, default=list(STEPS), help="comma-separated")
    run.add_argument("--limit-s", type=float, help="the step's time limit, recorded")
    run.add_argument("--logs", type=Path, help="server logs (default: logs/ beside --out)")
    run.add_argument("--bundle", type=Path, help="the fp32 bundle (default models/default)")
    run.add_argument("--fp16-bundle", type=Path, help="default models/default-fp16")
    run.add_argument("--port", type=int, help="first port of the servers (default 8171)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = args.out
    if args.action == "describe":
        describe(out)
        return 0
    plan = _plan(args)
    logs = args.logs or out.parent / "logs"
    signal.signal(signal.SIGTERM, _terminate)
    failed = [s for s in args.steps if not run_step(s, plan, out, logs, args.limit_s)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
