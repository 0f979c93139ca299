"""Virtual environments for the peer servers, one per framework, and for the packages that
cannot share the service's environment, under ``bench/.venvs/``.

Each peer gets only its framework plus the libraries FusionServe's torch-free modules need
(onnxruntime, pillow, numpy, tokenizers, pydantic, pydantic-settings). The fusionserve package
itself is not installed there (its pins may clash with a framework's); peer servers import
``app.*`` through PYTHONPATH. The shared libraries are pinned to the versions in the running
(main) environment, so every system decodes and runs the models with identical code.

Such an isolated package gets itself and the main environment's numpy. KServe's SDK: its gRPC
stubs register the same protobuf symbols as tritonclient's (which ``app.oip_grpc`` imports), so
the two cannot be imported in one process; the suite runs it there
(``tests/support/kserve_sdk.py``). defnull's ``multipart``: its module has the name of the shim
python-multipart still installs; ``bench/overhead/multipart_parsers.py`` times it there.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from bench.harness.paths import BENCH_DIR

VENVS_DIR = BENCH_DIR / ".venvs"

# The libraries app.bundle/app.preprocess/app.core.pipeline/app.core.runtime/app.core.engine import.
SHARED = (
    "onnxruntime",
    "pillow",
    "simplejpeg",
    "numpy",
    "tokenizers",
    "pydantic",
    "pydantic-settings",
)

FRAMEWORKS: dict[str, tuple[str, ...]] = {
    # LitServe parses multipart through Starlette, which needs python-multipart.
    "litserve": ("litserve==0.2.19", "python-multipart"),
    # Pinned: later 1.4.x releases failed about 20% of composed (bentoml.depends) calls.
    "bentoml": ("bentoml==1.4.30",),
    "ray": ("ray[serve]==2.60.0", "python-multipart"),
}


ISOLATED: dict[str, tuple[str, ...]] = {
    "kserve": ("kserve==0.21.0",),
    "multipart": ("multipart==2.0.1",),
}


def shared_pins(names: tuple[str, ...] = SHARED) -> list[str]:
    """``name==version`` for the shared libraries, as installed in this interpreter."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


def venv_python(name: str) -> Path:
    return VENVS_DIR / name / "bin" / "python"


def _stamp(name: str) -> Path:
    return VENVS_DIR / name / ".fusionserve-bench-requirements"


def requirements(name: str) -> list[str]:
    if name in ISOLATED:
        return [*ISOLATED[name], *shared_pins(("numpy",))]
    return [*FRAMEWORKS[name], *shared_pins()]


def is_ready(name: str) -> bool:
    """True if the venv exists and was built for exactly the current requirements."""
    stamp = _stamp(name)
    return stamp.exists() and stamp.read_text() == "\n".join(requirements(name))


def ensure(name: str, *, log: Path | None = None) -> Path:
    """Build (or rebuild) the peer's or isolated package's venv if missing or stale; return
    its python."""
    if is_ready(name):
        return venv_python(name)
    target = VENVS_DIR / name
    reqs = requirements(name)
    print(f"[venvs] building {target} with {' '.join(reqs)}", flush=True)
    out = log.open("a") if log else None
    try:
        # The main venv's interpreter is itself a venv; `-m venv` bases the new one on the
        # same base Python (3.11), so every system runs the same interpreter version.
        pip = [str(venv_python(name)), "-m", "pip", "install", "--disable-pip-version-check"]
        if not venv_python(name).exists():  # a stale venv is updated in place by pip below
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
            subprocess.run([*pip, "-q", "--upgrade", "pip"], check=True, stdout=out, stderr=out)
        subprocess.run([*pip, *reqs], check=True, stdout=out, stderr=out)
        _check_no_torch(name)
    finally:
        if out:
            out.close()
    _stamp(name).write_text("\n".join(reqs))
    return venv_python(name)


def _check_no_torch(name: str) -> None:
    # A framework pulling torch would mean GBs of CUDA wheels and a different process image.
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    if subprocess.run([str(venv_python(name)), "-c", probe]).returncode != 0:
        raise RuntimeError(f"the {name} venv contains torch; refusing to benchmark with it")


def versions(name: str) -> dict[str, str]:
    """Installed versions of the framework and shared libraries in a peer venv."""
    dists = [req.split("==")[0].split("[")[0] for req in requirements(name)]
    code = (
        "import importlib.metadata as m, json, sys\n"
        "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))"
    )
    result = subprocess.run(
        [str(venv_python(name)), "-c", code, *dists], check=True, capture_output=True, text=True
    )
    parsed: dict[str, str] = json.loads(result.stdout)
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness.venvs",
        description="build the peer servers' and the isolated packages' virtual environments",
    )
    parser.add_argument(
        "names",
        nargs="*",
        help=f"default: all of {', '.join(FRAMEWORKS)} (the peers); isolated: "
        + ", ".join(ISOLATED),
    )
    args = parser.parse_args()
    for name in args.names or list(FRAMEWORKS):
        print(ensure(name))


if __name__ == "__main__":
    main()
