"""Make ``import torch`` fail, as on a machine where only the service is installed.

The service's tests (tests/app, tests/deploy, tests/e2e) run under ``pytest --without-torch``
(``make test`` does), so a test or helper there that needs torch fails at once instead of
quietly tying the service's test suite to the export extra. The tool tests (tests/models,
tests/bench) run without it: training and export need torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

BLOCKED = frozenset({"torch", "torchvision"})


class TorchBlocker(importlib.abc.MetaPathFinder):
    """A finder ahead of every other that refuses the blocked top-level packages."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(
                f"{fullname} is blocked: the service's tests must not need torch",
                name=fullname,
            )
        return None


def block_torch() -> None:
    """Install the blocker; torch must not be imported already."""
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    if loaded:
        raise RuntimeError(f"already imported before the blocker: {', '.join(loaded)}")
    if not any(isinstance(finder, TorchBlocker) for finder in sys.meta_path):
        sys.meta_path.insert(0, TorchBlocker())
