from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.repo_paths import DEFAULT_BUNDLE, SAMPLES, TAGS_BUNDLE


def built(bundle: Path, command: str) -> Path:
    """``bundle``, failing the test with the ``command`` that builds it when it is not built."""
    if not (bundle / "manifest.json").is_file():
        pytest.fail(f"{bundle} is not built: run `{command}` (the README's test command does)")
    return bundle


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    return built(DEFAULT_BUNDLE, "fusionserve build-default-bundle")


@pytest.fixture(scope="session")
def tags_bundle() -> Path:
    return built(TAGS_BUNDLE, "python -m models.recipes.fashion_mnist.tags_bundle")


@pytest.fixture(scope="session")
def samples() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((SAMPLES / "samples.json").read_text())
    assert len(entries) >= 4
    return entries
