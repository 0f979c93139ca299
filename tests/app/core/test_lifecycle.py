"""The service's lifecycle: one status that every reader shares."""

from __future__ import annotations

from app.core.lifecycle import Lifecycle, Status
from app.errors import NotReady, ShuttingDown


def test_loading_then_ready_then_stopping() -> None:
    lifecycle = Lifecycle()
    assert (lifecycle.status, lifecycle.accepting) == (Status.LOADING, True)
    assert isinstance(lifecycle.unavailable(), NotReady)
    lifecycle.loaded()
    assert (lifecycle.status, lifecycle.accepting) == (Status.READY, True)
    lifecycle.stop_accepting()
    assert (lifecycle.status, lifecycle.accepting) == (Status.STOPPING, False)
    assert isinstance(lifecycle.unavailable(), ShuttingDown)
    lifecycle.loaded()  # a load that ends while stopping does not reopen it
    assert lifecycle.status is Status.STOPPING


def test_failed_stays_failed() -> None:
    lifecycle = Lifecycle()
    lifecycle.failed("bad bundle")
    lifecycle.stop_accepting()
    lifecycle.loaded()
    assert (lifecycle.status, lifecycle.error, lifecycle.accepting) == (
        Status.FAILED,
        "bad bundle",
        False,
    )
    unavailable = lifecycle.unavailable()
    assert isinstance(unavailable, NotReady)
    assert "failed" in unavailable.message
