"""A form's fields checked before validation: unexpected names and repeats refused, named."""

from __future__ import annotations

import pytest

from app.errors import InvalidRequest
from app.rest.forms import check_fields

ONCE = frozenset({"image", "text", "top_k"})
REPEATED = frozenset({"images", "texts"})


@pytest.mark.parametrize(
    "names",
    [[], ["image", "text"], ["text", "top_k", "image"], ["images", "texts", "images", "texts"]],
)
def test_expected_fields_pass(names: list[str]) -> None:
    check_fields([(name, "") for name in names], ONCE, REPEATED)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["image", "colour"], "unexpected field 'colour'; the form takes image, images, text"),
        (["image", "text", "image"], "field 'image' was sent 2 times; send it once"),
        # The first name (in the order sent) that is wrong decides the message.
        (["text", "colour", "text"], "field 'text' was sent 2 times; send it once"),
        (["colour", "text", "text"], "unexpected field 'colour'"),
        (["images", "top_k", "top_k", "top_k"], "field 'top_k' was sent 3 times"),
    ],
)
def test_unexpected_and_repeated_fields_are_named(names: list[str], message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_fields([(name, "") for name in names], ONCE, REPEATED)
    assert raised.value.message.startswith(message)
