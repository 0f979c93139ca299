"""Helpers shared by the export scripts: pinned-weight checks, ONNX Runtime sessions, diffs."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.bundle.loader import sha256_file

# ONNX opset of every exported graph. 17 is the first with a fused LayerNormalization op and is
# supported by every ONNX Runtime release FusionServe accepts (>= 1.20).
OPSET = 17


class ExportError(RuntimeError):
    """An export produced a model that does not match its source, or the source is not pinned."""


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Fail unless ``path`` has the pinned hash: the bundle must come from known weights only."""
    if not path.is_file():
        raise ExportError(f"{what}: {path} does not exist (is its weight package installed?)")
    actual = sha256_file(path)
    if actual != expected:
        raise ExportError(
            f"{what}: {path} has sha256 {actual}, expected the pinned {expected}; "
            "reinstall the pinned package version"
        )


def cpu_session(path: Path) -> ort.InferenceSession:
    """A plain CPU session, as the service's default execution provider would build it."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_abs_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    if actual.shape != expected.shape:
        raise ExportError(f"shape mismatch: ONNX {actual.shape} vs torch {expected.shape}")
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))


def check_close(name: str, actual: np.ndarray, expected: np.ndarray, tolerance: float) -> float:
    """Return the max abs diff, raising if it exceeds ``tolerance``."""
    diff = max_abs_diff(actual, expected)
    if not diff <= tolerance:  # written this way so that NaN fails too
        raise ExportError(f"{name}: ONNX Runtime vs torch max abs diff {diff:.3g} > {tolerance}")
    return diff


@contextmanager
def staged_output(out_path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``out_path``; move it into place only if the block succeeds.

    A failed verification must never leave a model behind that ``--skip-existing`` would reuse.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = out_path.with_name(out_path.name + ".partial")
    try:
        yield staging
        os.replace(staging, out_path)
    finally:
        staging.unlink(missing_ok=True)


@contextmanager
def legacy_exporter_warnings_silenced() -> Iterator[None]:
    """Hide the known, harmless warnings of the TorchScript exporter (``dynamo=False``).

    The dynamo exporter needs ``onnxscript``, which the ``export`` extra does not install; the
    TorchScript exporter is deprecated but produces correct graphs for both encoders, and each
    export is verified numerically against torch afterwards.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*Constant folding - Only steps=1.*")
        warnings.filterwarnings("ignore", category=_tracer_warning())
        # The exporter calls its own deprecated logging helper (torch 2.13).
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        yield


def _tracer_warning() -> type[Warning]:
    # Imported lazily so that importing this module does not import torch.jit eagerly.
    # From its defining module: torch.jit re-exports it but leaves it out of torch.jit.__all__.
    from torch.jit._trace import TracerWarning

    return TracerWarning


def run_session(session: ort.InferenceSession, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Run every output of ``session`` and return them by name."""
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds)), strict=True))
