"""The ``gpu-results`` section of docs/gpu.md, rendered from bench/results/gpu.json (written by
bench/gpu_check.sh): the run, each step's outcome, and the figures of steps (a)-(d) with every
target met or missed and the figure it rests on. Without a results file it says that no GPU
run has been made yet, and how to make one.

``python -m bench.gpu.gpu_doc`` rewrites the section; ``--check`` changes nothing and exits 1
when it is stale; ``--results FILE`` and ``--doc FILE`` render another run into another page
(bench/gpu_check.sh does so for quick runs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gpu import results
from bench.gpu.gpu_doc_steps import batch_sweep_lines, memory_lines, saturation_lines, scaling_lines
from bench.harness.generated_docs import sections_main
from bench.harness.paths import DOCS_DIR, REPO_ROOT, read_results

DOC = DOCS_DIR / "gpu.md"
SECTION = "gpu-results"
HOW_TO_RUN = "`bash bench/gpu_check.sh`"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def no_results(path: Path) -> str:
    return "\n".join(
        [
            f"**No GPU run has been made yet**: `{_relative(path)}` does not exist, so this "
            "page has no GPU figures, and none of the targets above is known to be met.",
            "",
            f"To make one, run {HOW_TO_RUN} on a machine with an NVIDIA GPU (about 8 "
            "minutes; see *Running the check* above), then commit `bench/results/gpu.json` "
            "and this page. Until then the script is tested on a CPU machine only: its syntax, "
            "and every measurement step in quick mode on the CPU "
            "(`bash bench/gpu_check.sh --device cpu --quick`, tests/bench/test_gpu_check.py).",
        ]
    )


def _run_lines(data: dict[str, Any]) -> list[str]:
    run = data["run"]
    runtime = run.get("runtime", {})
    machine = run.get("machine", {})
    lines = [
        f"Run of {str(run.get('started', '?'))[:10]} (commit {str(run.get('git_commit', '?'))[:7]}"
        f"): `{run.get('command') or 'bench/gpu_check.sh'}`; {machine.get('cpus', '?')} cores; "
        f"GPU: {run.get('gpu') or 'none found (no nvidia-smi)'}; ONNX Runtime "
        f"{runtime.get('onnxruntime', '?')} with {', '.join(runtime.get('providers', [])) or '?'}.",
    ]
    if run.get("device") != "cuda" or not run.get("gpu"):
        lines += [
            "",
            f"**Not a GPU run** (device {run.get('device')}"
            f"{', quick mode' if run.get('quick') else ''}): it shows that the script works; "
            "its figures say nothing about a GPU.",
        ]
    elif run.get("quick"):
        lines += ["", "**Quick mode**: short runs and few requests; the figures are rough."]
    return lines


def _step_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        "| Step | Outcome | Time (s) | Limit (s) | Note |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for name in results.ALL_STEPS:
        step = data["steps"].get(name)
        if step is None:
            lines.append(f"| {name} | not run | - | - | |")
            continue
        note = " ".join(str(step.get("summary") or step.get("note") or "").split())
        note = note.replace("|", "/")[:200]
        seconds, limit = step.get("seconds"), step.get("limit_s")
        lines.append(
            f"| {name} | {step.get('status', '?')} | {'-' if seconds is None else seconds} | "
            f"{'-' if limit is None else f'{limit:g}'} | {note} |"
        )
    return lines


def _measured(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    step = data["steps"].get(name, {})
    result: dict[str, Any] | None = step.get("result") if step.get("status") == "ok" else None
    return result


def render(data: dict[str, Any]) -> str:
    lines = [*_run_lines(data), "", "### Steps", "", *_step_lines(data)]
    parts = (
        ("### (a) Worker scaling, tiny bundle", "scaling", scaling_lines),
        ("### (b) Default bundle saturation, CPU and GPU decoding", "saturation", saturation_lines),
        ("### (c) GPU memory over varied batch sizes", "memory", memory_lines),
        ("### (d) Batch-size sweep, in-process", "batch_sweep", batch_sweep_lines),
    )
    for title, name, body in parts:
        result = _measured(data, name)
        lines += ["", title, ""]
        missing = [f"Not measured: step `{name}` did not succeed."]
        lines += body(result) if result is not None else missing
    return "\n".join(lines)


def sections(path: Path) -> dict[str, str]:
    """The section, from ``path`` (the no-run text when it does not exist)."""
    if not path.exists():
        return {SECTION: no_results(path)}
    return {SECTION: render(read_results(path))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results", type=Path, default=results.RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return sections_main(
        "python -m bench.gpu.gpu_doc",
        (__doc__ or "").split("\n\n")[0],
        known.doc,
        lambda: sections(known.results),
        rest,
    )


if __name__ == "__main__":
    raise SystemExit(main())
