"""Multipart forms: limits while parsing, and exactly the expected fields after.

FastAPI parses ``Form``/``File`` parameters itself, before the endpoint runs, with Starlette's
``request.form``. Since FastAPI 0.165 the parser's limits (``max_files``, ``max_fields``,
``max_part_size``) can be given per router, so ``create_app`` includes the router with
``form_limits(settings)``. The endpoint signatures thereby stay the one description of each
form, for validation and for the OpenAPI schema alike. Parsing the form by hand in a
dependency (``request.form(max_...)``, pydantic, and the schema again in ``openapi_extra``)
would describe every form twice, and the two could drift apart.

The limits derive from the settings: at most ``max_items_per_request`` files and that many
text fields plus ``SCALAR_FIELDS``; no text field over ``max_text_field_bytes`` (file parts are not
counted there: they are bounded by the body limit of the gate and by ``max_image_bytes``).

Two things FastAPI leaves open are done here:

* FastAPI ignores fields it does not expect and, for a single-valued parameter, silently
  takes one of several values. ``expect_fields`` refuses both (422), naming the field.
* Starlette reports a broken limit as a 400 ``HTTPException`` raised while handling its
  ``MultiPartException``. ``form_error`` turns that into our own error: 413 for limits,
  400 for a malformed body.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import TypedDict

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
    """The ``form_limits`` FastAPI hands to ``request.form``."""

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

FieldCheck = Callable[[Request], Awaitable[None]]


def expect_fields(*, once: Collection[str], repeated: Collection[str] = ()) -> FieldCheck:
    """A dependency that refuses fields other than ``once`` and ``repeated``, and repeats of
    the ``once`` fields. FastAPI has parsed (and cached) the form before it runs."""
    expected = ", ".join(sorted({*once, *repeated}))

    async def check_fields(request: Request) -> None:
        form = await request.form()
        counts = Counter(name for name, _ in form.multi_items())
        for name, count in counts.items():
            if name not in once and name not in repeated:
                raise InvalidRequest(f"unexpected {_field(name)}; the form takes {expected}")
            if count > 1 and name not in repeated:
                raise InvalidRequest(f"{_field(name)} was sent {count} times; send it once")

    return check_fields


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
