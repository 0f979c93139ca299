"""The runner's refusals leave no reference cycle behind: a refused request's data (its body,
its image: megabytes) is freed when the request ends, not when the cyclic collector next
runs (a lean request path allocates little, so that can be long after a burst)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.classification import ClassifyInput
from app.errors import Overloaded
from app.main import create_app
from tests.support.app_setup import make_settings
from tests.support.gated_service import ready_client
from tests.support.images import encode_image, photo

pytestmark = pytest.mark.anyio


@pytest.fixture
def collector_saving_garbage() -> Iterator[None]:
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_a_refusal_is_freed_with_its_request(
    tiny_bundle_dir: Path, collector_saving_garbage: None
) -> None:
    app = create_app(make_settings(tiny_bundle_dir, max_in_flight=2))
    async for _ in ready_client(app):
        runner = app.state.core.registry.default.runner
        runner.admission.in_flight = 2  # full: the next request is refused by admission
        item = ClassifyInput(encode_image(photo(80, 60)), "a refused cat")
        for _ in range(3):
            with pytest.raises(Overloaded):
                await app.state.core.classify([item, item])
        runner.admission.in_flight = 0
    gc.collect()
    refusals = [o for o in gc.garbage if isinstance(o, Overloaded)]
    assert refusals == [], "a refusal was left in a reference cycle"
