"""Schemathesis against the app's own OpenAPI schema, on the tiny bundle with the model loaded.

Generated requests, valid and invalid, to every operation: never a 5xx, and every status,
content type and body as the schema documents it. With authentication on, the bearer
scheme is enforced where declared and every 401 is documented.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.oip.http_routes import V2_HEALTH_PATHS
from app.rest.routes import HEALTH_PATHS
from tests.support.app_setup import make_settings

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 50


def _started(app: FastAPI) -> FastAPI:
    """Start the app's lifespan (schemathesis keeps it running) and wait for the model."""
    deadline = time.monotonic() + 30
    with asgi.get_client(app) as client:
        while time.monotonic() < deadline:
            if client.get("/readyz").status_code == 200:
                return app
            time.sleep(0.01)
    raise AssertionError("the tiny bundle did not load in 30 s")


@pytest.fixture
def open_app(tiny_bundle_dir: Path) -> Iterator[FastAPI]:
    # Per test: schemathesis's pytest plugin ends every ASGI lifespan when a test ends.
    yield _started(create_app(make_settings(tiny_bundle_dir)))
    asgi.shutdown_lifespans()


@pytest.fixture
def keyed_app(tiny_bundle_dir: Path) -> Iterator[FastAPI]:
    yield _started(create_app(make_settings(tiny_bundle_dir, api_keys=[KEY])))
    asgi.shutdown_lifespans()


def _fuzz(
    app: FastAPI, mode: GenerationMode, call: Callable[[Case], Any], headers: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /classify", "POST /classify/batch"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing to make invalid in a GET without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case) -> None:
            call(case)

        run()


def _untyped_form_field(failures: FailureGroup, case: Case) -> bool:
    """A multipart form carries text only: a "number" where the schema says string (or a
    one-item list) is sent as the same bytes as a valid value, so no server could refuse it."""
    return case.media_type == "multipart/form-data" and all(
        isinstance(f, AcceptedNegativeData) and "violates `type`" in str(f)
        for f in failures.exceptions
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(open_app: FastAPI, mode: GenerationMode) -> None:
    if mode is GenerationMode.POSITIVE:
        _fuzz(open_app, mode, lambda case: case.call_and_validate(checks=CHECKS), {})
        return

    def call(case: Case) -> None:
        try:
            case.call_and_validate(checks=[*CHECKS, negative_data_rejection])
        except FailureGroup as failures:
            if not _untyped_form_field(failures, case):
                raise

    _fuzz(open_app, mode, call, {})


def test_keyed_api_conforms_and_enforces_its_key(keyed_app: FastAPI) -> None:
    def call(case: Case) -> None:
        case.call_and_validate(headers=AUTH, checks=[*CHECKS, ignored_auth])
        # And without the key: a documented 401, whatever was generated.
        anonymous = case.call_and_validate(checks=CHECKS)
        if case.operation.path not in (*HEALTH_PATHS, *V2_HEALTH_PATHS):
            assert anonymous.status_code == 401

    _fuzz(keyed_app, GenerationMode.POSITIVE, call, AUTH)
