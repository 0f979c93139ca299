"""The blocker behind ``pytest --without-torch`` makes torch look absent, and only torch."""

from __future__ import annotations

import subprocess
import sys

from tests.support.repo_paths import ROOT

SCRIPT = """
import importlib, importlib.util, sys
from tests.support.without_torch import block_torch
block_torch()
for name in ("torch", "torch.nn", "torchvision"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"{name} was imported")
    assert importlib.util.find_spec(name.split(".")[0]) is None, name
    assert name not in sys.modules, name
import importlib.metadata
assert importlib.metadata.version("pytest")  # other distributions are still found
names = {(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
assert "torch" not in names and "onnxruntime" in names, sorted(names)
import onnxruntime, numpy, app.main  # noqa: E401  (everything the service needs still imports)
print("BLOCKED-OK")
"""


def test_torch_is_refused_and_the_service_still_imports() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "BLOCKED-OK" in result.stdout
