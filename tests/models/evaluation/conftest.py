"""Module-scoped fixtures of the multilabel ``evaluate`` tests: a tiny multilabel bundle with
presence inputs and temperature 2, a 60-row dataset, its report and the expected values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.evaluation.evaluate import evaluate
from tests.models.evaluation.multilabel_expected import TEMPERATURE, expected_outputs
from tests.support.multilabel_dataset import TAG_RATES, write_multilabel_dataset
from tests.support.tiny_bundle import TinyHead, make_tiny_multilabel_bundle

# The 60-row dataset's splits: evaluate scores the test split.
ML_SPLITS = {"train": 12, "val": 12, "test": 36}


@pytest.fixture(scope="module")
def ml_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TinyHead]:
    """Presence inputs (so every ablation row runs) and temperature 2."""
    root = tmp_path_factory.mktemp("multilabel-bundle")
    return root, make_tiny_multilabel_bundle(root, presence=True, temperature=TEMPERATURE)


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_multilabel_dataset(
        tmp_path_factory.mktemp("multilabel-data"), ML_SPLITS, rates=TAG_RATES
    )


@pytest.fixture(scope="module")
def ml_report(ml_bundle: tuple[Path, TinyHead], ml_data: Path) -> dict[str, Any]:
    return evaluate(ml_bundle[0], ml_data, cache_dir=None, progress=False)


@pytest.fixture(scope="module")
def ml_expected(ml_bundle: tuple[Path, TinyHead], ml_data: Path) -> dict[str, Any]:
    return expected_outputs(ml_bundle[0], ml_data)
