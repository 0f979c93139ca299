"""KServe's Python SDK for the suite: ``kserve_calls`` runs a list of calls
(``tests/support/kserve_sdk_calls.py`` says their fields) through the SDK, unmodified, in its
own venv (built once by ``bench/harness/venvs.py``; the SDK cannot share this process, whose
tritonclient registers the same gRPC message types), and returns what the SDK answered."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from bench.harness.venvs import ensure

SCRIPT = Path(__file__).with_name("kserve_sdk_calls.py")
TIMEOUT_S = 120


def kserve_python() -> Path:
    """The kserve venv's python, building the venv first if it is missing or stale."""
    return ensure("kserve")


def kserve_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One outcome per call: ``{"ok": ...}`` or ``{"error": ...}`` as the SDK raised it."""
    completed = subprocess.run(
        [str(kserve_python()), str(SCRIPT)],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    outcomes: list[dict[str, Any]] = json.loads(completed.stdout)
    assert len(outcomes) == len(calls)
    return outcomes


def b64(images: list[bytes]) -> list[str]:
    """Images as a call carries them (the script decodes them where the SDK sends bytes)."""
    return [base64.b64encode(image).decode() for image in images]
