"""Make torch look absent, as on a machine where only the service is installed.

The service's tests (tests/app, tests/deploy, tests/e2e) run under ``pytest --without-torch``
(``make test`` does), so a test or helper there that needs torch fails at once instead of
quietly tying the service's test suite to the export extra. The tool tests (tests/models,
tests/bench) run without it: training and export need torch.

A ``None`` entry in ``sys.modules`` is Python's own marker for "not importable": ``import
torch`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec("torch")`` returns
``None``, exactly as when torch is not installed (libraries that probe for torch, such as
ONNX Runtime's tools, then take their torch-free path).
"""

from __future__ import annotations

import sys

BLOCKED = ("torch", "torchvision")


def block_torch() -> None:
    """Make the blocked packages unimportable; none may be imported already."""
    loaded = sorted(
        name
        for name, module in sys.modules.items()
        if name.split(".")[0] in BLOCKED and module is not None
    )
    if loaded:
        raise RuntimeError(f"already imported before the blocker: {', '.join(loaded)}")
    for name in BLOCKED:
        sys.modules[name] = None  # type: ignore[assignment]
