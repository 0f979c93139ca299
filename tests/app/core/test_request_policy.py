"""The request policy: what a request may ask of a bundle's head, checked before any work."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.bundle.manifest import FusionHead
from app.core.classification import ClassifyInput
from app.core.request_policy import RequestPolicy
from app.errors import ExplainUnsupported, InvalidRequest, InvalidText, ModalityRequired

IMAGE = b"image bytes: the policy never decodes them"


def head(presence: bool) -> FusionHead:
    fields: dict[str, Any] = {
        "file": "head.onnx",
        "sha256": "0" * 64,
        "image_input": "image_features",
        "text_input": "text_features",
        "output": "logits",
        "output_type": "logits",
    }
    if presence:
        fields |= {"image_present": "image_present", "text_present": "text_present"}
    return FusionHead.model_validate(fields)


PLAIN = RequestPolicy(head(presence=False), max_text_chars=20)
OPTIONAL = RequestPolicy(head(presence=True), max_text_chars=20)


def test_nothing_sent_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="an image, a text, or both"):
        OPTIONAL.check(ClassifyInput(None, None))


def test_a_head_without_presence_inputs_needs_both_modalities() -> None:
    with pytest.raises(ModalityRequired, match="needs the image"):
        PLAIN.check(ClassifyInput(None, "a cat"))
    with pytest.raises(ModalityRequired, match="needs the text"):
        PLAIN.check(ClassifyInput(IMAGE, None))
    assert PLAIN.check(ClassifyInput(IMAGE, "a cat")) == ClassifyInput(IMAGE, "a cat")


def test_a_head_with_presence_inputs_takes_either_alone() -> None:
    assert OPTIONAL.check(ClassifyInput(None, "a cat")) == ClassifyInput(None, "a cat")
    assert OPTIONAL.check(ClassifyInput(IMAGE, None)) == ClassifyInput(IMAGE, None)


def test_explain_needs_a_head_that_leaves_either_out_and_both_modalities() -> None:
    with pytest.raises(ExplainUnsupported, match="cannot leave"):
        PLAIN.check(ClassifyInput(IMAGE, "a cat", explain=True))
    for image, text in ((None, "a cat"), (IMAGE, None)):
        with pytest.raises(ExplainUnsupported, match="needs both"):
            OPTIONAL.check(ClassifyInput(image, text, explain=True))
    explained = ClassifyInput(IMAGE, "a cat", explain=True)
    assert OPTIONAL.check(explained) == explained


def test_the_text_is_cleaned_and_checked() -> None:
    # NFC (e + combining acute -> é) and trimmed; the image and explain are kept.
    checked = OPTIONAL.check(ClassifyInput(IMAGE, "  cafe\u0301  ", explain=True))
    assert checked == ClassifyInput(IMAGE, "café", explain=True)
    with pytest.raises(InvalidText, match="limit is 20"):
        OPTIONAL.check(ClassifyInput(None, "x" * 21))
    with pytest.raises(InvalidText, match="must not be empty"):
        OPTIONAL.check(ClassifyInput(IMAGE, " \u200b "))


def test_the_checked_item_is_built_from_every_field_it_has() -> None:
    # RequestPolicy.check builds the checked item field by field (the test above shows each
    # kept): a field added to ClassifyInput must be carried there too.
    assert [f.name for f in dataclasses.fields(ClassifyInput)] == ["image", "text", "explain"]
