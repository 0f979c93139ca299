"""Fixtures of the batcher's tests (tests/app/core/test_batching.py and
tests/app/core/test_priorities.py)."""

from __future__ import annotations

import pytest

from tests.support.fake_batching import FakeClock, FakeModel


@pytest.fixture
def model() -> FakeModel:
    """A fake model: doubles its inputs, can be held busy."""
    return FakeModel()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
