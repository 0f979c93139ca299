"""Make torch look absent, as on a machine where only the service is installed.

The service's tests (tests/app, tests/deploy, tests/e2e) run under ``pytest --without-torch``
(``make test`` does), so a test or helper there that needs torch fails at once instead of
quietly tying the service's test suite to the export extra. The tool tests (tests/models,
tests/bench) run without it: training and export need torch.

The path-based finders on ``sys.meta_path`` are wrapped so that they do not find the blocked
packages: ``import torch`` raises ``ModuleNotFoundError: No module named 'torch'``,
``importlib.util.find_spec("torch")`` returns ``None``, ``"torch" in sys.modules`` is false and
``importlib.metadata`` lists no torch distribution,
exactly as when torch is not installed (libraries that probe for torch, such as ONNX Runtime's
tools and SciPy's array API layer, then take their torch-free paths).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import sys
from collections.abc import Iterable, Iterator, Sequence
from types import ModuleType
from typing import Any

BLOCKED = frozenset({"torch", "torchvision"})


class HidingFinder(importlib.abc.MetaPathFinder):
    """Delegates to a finder, except that the blocked packages are never found."""

    def __init__(self, finder: Any) -> None:
        self.finder = finder

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in BLOCKED:
            return None
        spec: importlib.machinery.ModuleSpec | None = self.finder.find_spec(fullname, path, target)
        return spec

    def find_distributions(
        self, context: importlib.metadata.DistributionFinder.Context | None = None
    ) -> Iterator[importlib.metadata.Distribution]:
        """The wrapped finder's installed distributions (``importlib.metadata`` asks every
        finder on ``sys.meta_path``), without the blocked ones."""
        find = getattr(self.finder, "find_distributions", None)
        if find is None:
            return iter(())
        found: Iterable[importlib.metadata.Distribution] = find(
            context or importlib.metadata.DistributionFinder.Context()
        )
        return (dist for dist in found if (dist.metadata["Name"] or "").lower() not in BLOCKED)

    def invalidate_caches(self) -> None:
        invalidate = getattr(self.finder, "invalidate_caches", None)
        if invalidate is not None:
            invalidate()


def block_torch() -> None:
    """Hide the blocked packages from every finder; none may be imported already."""
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    if loaded:
        raise RuntimeError(f"already imported before the blocker: {', '.join(loaded)}")
    sys.meta_path[:] = [
        finder if isinstance(finder, HidingFinder) else HidingFinder(finder)
        for finder in sys.meta_path
    ]
