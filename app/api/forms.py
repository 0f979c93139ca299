"""Multipart forms: each form is one pydantic model, parsed within limits, fields checked.

A form's model (``app/api/rest_forms.py``) is the one description of its fields: the route
parses with it (``parsed_form``) and documents it (``form_openapi``: the request body of the
OpenAPI schema is the model's JSON schema). The route itself takes only the ``Request``, so
FastAPI does no per-request dependency solving over the form's parameters: on the tiny
bundle that introspection cost about as much server CPU as decoding the image (profiled).
Values are validated by the model (pydantic-core), and a failure is raised as FastAPI's own
``RequestValidationError`` with the field's location, so it is answered as before (422).
As with FastAPI's form parameters, an empty single value counts as left out.

The parser's limits derive from the settings: at most ``max_items_per_request`` files and
that many text fields plus ``SCALAR_FIELDS``; no text field over ``max_text_field_bytes``
(file parts are not counted there: they are bounded by the body limit of the gate and by
``max_image_bytes``).

Two things a form model leaves open are done here:

* Fields the form does not have, and repeats of a single-valued field, are refused (422),
  naming the field (``check_fields``).
* Starlette reports a broken limit as a 400 ``HTTPException`` raised while handling its
  ``MultiPartException``. ``form_error`` turns that into our own error: 413 for limits,
  400 for a malformed body.
"""

from __future__ import annotations

import functools
import re
import typing
from collections import Counter
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from app.errors import (
    FieldTooLarge,
    InvalidRequest,
    MalformedForm,
    RequestError,
    TooManyItems,
)
from app.settings import Settings


class FormLimits(TypedDict, total=False):
    """The limits ``request.form`` takes."""

    max_files: int
    max_fields: int
    max_part_size: int


# The single-valued, non-file fields a form may carry besides its texts.
SCALAR_FIELDS = ("top_k", "explain", "model")


def form_limits(settings: Settings) -> FormLimits:
    items = settings.max_items_per_request
    return {
        "max_files": items,
        "max_fields": items + len(SCALAR_FIELDS),  # one text per item, and the scalars
        "max_part_size": settings.max_text_field_bytes,
    }


# Field names that may be quoted back in an error; others are user input of any shape.
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,40}")

Form = TypeVar("Form", bound=BaseModel)


@dataclass(frozen=True)
class ParsedForm(Generic[Form]):
    """A form's validated fields, and the multipart data they came from."""

    fields: Form
    data: FormData


@functools.cache
def form_fields(form: type[BaseModel]) -> tuple[frozenset[str], frozenset[str]]:
    """The fields of ``form`` that take one value, and those that take several (its
    list-typed ones); read once per form model."""
    repeated = frozenset(
        name
        for name, field in form.model_fields.items()
        if typing.get_origin(field.annotation) is list
    )
    return frozenset(form.model_fields) - repeated, repeated


def check_fields(data: FormData, once: Collection[str], repeated: Collection[str]) -> None:
    """Refuse fields other than ``once`` and ``repeated``, and repeats of the ``once`` ones."""
    expected = ", ".join(sorted({*once, *repeated}))
    counts = Counter(name for name, _ in data.multi_items())
    for name, count in counts.items():
        if name not in once and name not in repeated:
            raise InvalidRequest(f"unexpected {_field(name)}; the form takes {expected}")
        if count > 1 and name not in repeated:
            raise InvalidRequest(f"{_field(name)} was sent {count} times; send it once")


@asynccontextmanager
async def parsed_form(
    request: Request, form: type[Form], limits: FormLimits
) -> AsyncIterator[ParsedForm[Form]]:
    """The request's multipart body as ``form``, within ``limits``; its uploaded files are
    closed when the block ends."""
    once, repeated = form_fields(form)
    async with request.form(**limits) as data:
        check_fields(data, once, repeated)
        values: dict[str, Any] = {name: data.getlist(name) for name in repeated if name in data}
        for name in once:
            value = data.get(name)
            if value is not None and value != "":
                values[name] = value
        try:
            fields = form.model_validate(values)
        except ValidationError as exc:
            errors = [
                {**error, "loc": ("body", *error["loc"])}
                for error in exc.errors(include_url=False, include_input=False)
            ]
            raise RequestValidationError(errors) from None
        yield ParsedForm(fields, data)


def form_openapi(form: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that takes ``form`` as multipart/form-data."""
    schema = form.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


def _field(name: str) -> str:
    return f"field '{name}'" if _PRINTABLE_NAME.fullmatch(name) else "field (name not shown)"


# Starlette's messages for malformed bodies; they quote nothing from the request.
_MALFORMED = frozenset(
    {
        "Missing boundary in multipart.",
        "Invalid multipart data.",
        'The Content-Disposition header field "name" must be provided.',
    }
)


def form_error(exc: HTTPException, settings: Settings) -> RequestError | None:
    """Our error for an ``HTTPException`` that Starlette raised from a multipart parser error;
    None for any other ``HTTPException``."""
    cause = exc.__context__
    if exc.status_code != 400 or not isinstance(cause, MultiPartException):
        return None
    message = cause.message
    if message.startswith(("Part exceeded maximum size", "Field exceeded maximum size")):
        return FieldTooLarge(f"a text field is over {settings.max_text_field_bytes} bytes")
    if message.startswith(("Too many files", "Too many fields")):
        return TooManyItems(
            f"too many form parts; at most {settings.max_items_per_request} items per request"
        )
    reason = message if message in _MALFORMED else "the multipart body cannot be parsed"
    return MalformedForm(reason)
