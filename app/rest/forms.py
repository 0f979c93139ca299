"""Multipart forms: each form is one pydantic model, parsed within limits, fields checked.

A form's model (``app/rest/rest_forms.py``) is the one description of its fields: the route
parses with it (``parse_form``) and documents it (``form_openapi``: the request body of the
OpenAPI schema is the model's JSON schema). The body is read by ``app.rest.multipart_body``
(python-multipart's push parser, parts kept in memory). Values are validated by the model
(pydantic-core), and a failure is raised as FastAPI's own ``RequestValidationError`` with the
field's location, so it is answered as FastAPI answers it (422). As with FastAPI's form
parameters, an empty single value counts as left out.

The parser's limits derive from the settings: at most ``max_items_per_request`` files and
that many text fields plus ``SCALAR_FIELDS``; no text field over ``max_text_field_bytes``
and no file over ``max_image_bytes``.

Fields the form does not have, and repeats of a single-valued field, are refused (422),
naming the field (``check_fields``).
"""

from __future__ import annotations

import functools
import re
import typing
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, Strict, ValidationError, WithJsonSchema
from starlette.requests import ClientDisconnect, Request

from app.config.settings import Settings
from app.errors import ClientDisconnected, InvalidRequest
from app.rest.multipart_body import MultipartLimits, PartValue, read_multipart

# The single-valued, non-file fields a form may carry besides its texts.
SCALAR_FIELDS = ("top_k", "explain", "model", "priority")


def form_limits(settings: Settings) -> MultipartLimits:
    items = settings.max_items_per_request
    return MultipartLimits(
        max_files=items,
        max_fields=items + len(SCALAR_FIELDS),  # one text per item, and the scalars
        max_field_bytes=settings.max_text_field_bytes,
        max_file_bytes=settings.max_image_bytes,
        items=items,
    )


@dataclass(frozen=True)
class Upload:
    """A file part's content as ``parse_form`` hands it to a form: only a ``FilePart``
    field takes it (a text field refuses it, and a ``FilePart`` refuses a text)."""

    data: bytes


def _file_content(value: object) -> object:
    return value.data if isinstance(value, Upload) else value


# A file field of a form, its content in memory; documented as FastAPI documents an upload.
FilePart = Annotated[
    bytes,
    BeforeValidator(_file_content),
    Strict(),
    WithJsonSchema({"type": "string", "contentMediaType": "application/octet-stream"}),
]

# Field names that may be quoted back in an error; others are user input of any shape.
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,40}")

Form = TypeVar("Form", bound=BaseModel)


@dataclass(frozen=True)
class ParsedForm(Generic[Form]):
    """A form's validated fields, and the parts they came from."""

    fields: Form
    parts: Sequence[tuple[str, PartValue]]

    def sent(self, name: str) -> PartValue | None:
        """The first value sent for ``name`` (an empty one included), or None."""
        return next((value for key, value in self.parts if key == name), None)


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


def check_fields(
    parts: Sequence[tuple[str, PartValue]], once: Collection[str], repeated: Collection[str]
) -> None:
    """Refuse fields other than ``once`` and ``repeated``, and repeats of the ``once`` ones."""
    singles = [name for name, _ in parts if name not in repeated]
    if len(set(singles)) == len(singles) and all(name in once for name in singles):
        return  # the common case, without counting
    expected = ", ".join(sorted({*once, *repeated}))
    counts = Counter(name for name, _ in parts)
    for name, count in counts.items():
        if name not in once and name not in repeated:
            raise InvalidRequest(f"unexpected {_field(name)}; the form takes {expected}")
        if count > 1 and name not in repeated:
            raise InvalidRequest(f"{_field(name)} was sent {count} times; send it once")


async def parse_form(
    request: Request, form: type[Form], limits: MultipartLimits
) -> ParsedForm[Form]:
    """The request's multipart body as ``form``, within ``limits``."""
    once, repeated = form_fields(form)
    try:
        parts = await read_multipart(
            request.headers.get("content-type", ""), request.stream(), limits
        )
    except ClientDisconnect:
        raise ClientDisconnected("the client closed the connection") from None
    check_fields(parts, once, repeated)
    values: dict[str, Any] = {}
    for name, value in parts:
        given = Upload(value) if isinstance(value, bytes) else value
        if name in repeated:
            values.setdefault(name, []).append(given)
        elif given != "":  # an empty field is left out; an empty file is a file
            values[name] = given
    try:
        fields = form.model_validate(values)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None
    return ParsedForm(fields, parts)


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
