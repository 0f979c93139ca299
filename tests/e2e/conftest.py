from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.repo_paths import DEFAULT_BUNDLE, SAMPLES


@pytest.fixture(scope="session")
def default_bundle() -> Path:
    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.fail(
            "the default bundle is not built: run `fusionserve build-default-bundle` "
            "(the README's test command does)"
        )
    return DEFAULT_BUNDLE


@pytest.fixture(scope="session")
def samples() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((SAMPLES / "samples.json").read_text())
    assert len(entries) >= 4
    return entries
