"""Which of a model's nodes really ran in float16, read from ONNX Runtime's profile of one run.

A float16 model does not run in float16 everywhere it loads: where an execution provider has
no float16 kernel for an operator (most arithmetic on the x86 CPU provider), ONNX Runtime
inserts ``Cast`` nodes and runs that node in float32 on float16-rounded inputs. The profile
records every kernel's input types, so one run on small seeded inputs says, node by node,
which precision the arithmetic used on this provider.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

BATCH = 2
OTHER_DIM = 8  # any symbolic dimension but the first (a sequence length, say)
NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def _shape(dims: Sequence[int | str | None]) -> tuple[int, ...]:
    return tuple(
        d if isinstance(d, int) else (BATCH if i == 0 else OTHER_DIM) for i, d in enumerate(dims)
    )


def seeded_feed(session: ort.InferenceSession, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the session's shapes: floats in [0, 1) (presence flags, features, pixels),
    integers 1 (a token id and a mask value every vocabulary and mask accept)."""
    rng = np.random.default_rng(seed)
    feed: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        dtype = NUMPY_TYPES.get(arg.type)
        if dtype is None:
            raise ValueError(f"input {arg.name!r} has type {arg.type}, not one this check feeds")
        shape = _shape(arg.shape)
        if np.issubdtype(dtype, np.integer):
            feed[arg.name] = np.ones(shape, dtype=dtype)
        else:
            feed[arg.name] = rng.random(shape, dtype=np.float32).astype(dtype)
    return feed


def _precision(event: dict[str, Any]) -> str:
    types = {next(iter(entry)) for entry in event["args"].get("input_type_shape", [])}
    if "float16" in types:
        return "float16"
    if "float" in types:
        return "float32"
    if "double" in types:
        return "float64"
    return "no float input" if types else "unknown"


def profile(model: Path, providers: Sequence[str]) -> dict[str, Any]:
    """Run ``model`` once on ``providers`` with profiling; count its nodes (ONNX Runtime's own
    ``Cast`` nodes left out) by the type of their float inputs."""
    with tempfile.TemporaryDirectory(prefix="fusionserve-profile-") as work:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "run")
        options.log_severity_level = 3
        session = ort.InferenceSession(str(model), options, providers=list(providers))
        session.run(None, seeded_feed(session))
        events = json.loads(Path(session.end_profiling()).read_text())
        used = session.get_providers()
    kernels = [
        e
        for e in events
        if e.get("cat") == "Node"
        and e["name"].endswith("_kernel_time")
        and e["args"].get("op_name") != "Cast"
    ]
    by_precision = Counter(_precision(e) for e in kernels)
    float32_ops = Counter(e["args"]["op_name"] for e in kernels if _precision(e) == "float32")
    return {
        "provider": used[0],
        "kernels": len(kernels),
        "by_input_precision": dict(sorted(by_precision.items())),
        "float32_op_types": dict(sorted(float32_ops.items())),
    }
