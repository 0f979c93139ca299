"""A deployment's memory figures for the tests: the sizing rule (``bench.memory.sizing_rule``)
with the last measured warmed-up RSS, and memory quantities as Kubernetes and Compose write
them."""

from __future__ import annotations

import json
import math
import re

from app.config.settings import Settings
from app.workers.worker_pool import resolve_workers
from bench.memory.sizing_rule import worst_case_terms
from tests.support.repo_paths import ROOT

RESULTS = ROOT / "bench" / "results" / "decode-memory.json"
_KUBERNETES_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
}
_COMPOSE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}  # Docker's: binary


def measured_warm_rss_bytes() -> int:
    """The default bundle's warmed-up RSS, as last measured (bytes)."""
    results = json.loads(RESULTS.read_text())
    return int(results["servers"]["after"]["warm_rss_mb"] * 1e6)


def worst_case_bytes(settings: Settings, *, cuda: bool, cpus: float = 1.0) -> dict[str, int]:
    """Each term of the worst case with the last measured warmed-up RSS, in bytes, for a
    container of ``cpus`` (its CPU limit: what ``workers=auto`` resolves from)."""
    workers = resolve_workers(settings.workers, max(1, math.ceil(cpus)))
    return worst_case_terms(measured_warm_rss_bytes(), settings, cuda=cuda, workers=workers)


def kubernetes_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``1Gi``, ``512Mi``, ``1G``) in bytes."""
    match = re.fullmatch(r"(\d+)(|k|M|G|Ki|Mi|Gi)", quantity)
    assert match is not None, f"not a memory quantity this test knows: {quantity!r}"
    return int(match.group(1)) * _KUBERNETES_UNITS[match.group(2)]


def compose_bytes(size: str) -> int:
    """A Compose byte value (``1g``, ``128m``; Docker's units are binary) in bytes."""
    match = re.fullmatch(r"(\d+)([bkmg]?)", size.lower())
    assert match is not None, f"not a Compose byte value: {size!r}"
    return int(match.group(1)) * _COMPOSE_UNITS[match.group(2)]
