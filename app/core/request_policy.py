"""What a request may ask of a bundle, checked before any work is done on it: which modality
may be left out, when an explanation can be given, and what a text must be. Model execution
(``app.core.pipeline``) takes only what passed."""

from __future__ import annotations

from app.bundle.manifest import FusionHead, Modality
from app.core.classification import ClassifyInput
from app.errors import ExplainUnsupported, InvalidRequest, ModalityRequired
from app.preprocess.text import clean_text


class RequestPolicy:
    """The rules of one bundle's head; ``check`` applies them to an item."""

    def __init__(self, head: FusionHead, max_text_chars: int) -> None:
        self.head = head
        self.max_text_chars = max_text_chars

    def check(self, item: ClassifyInput) -> ClassifyInput:
        """``item`` with its text cleaned (NFC, trimmed), or a ``RequestError``: nothing sent
        (422), a modality the head cannot do without (``modality_required``), an explanation
        it cannot give (``explain_unsupported``), or an invalid text (``invalid_text``)."""
        image, text = item.image, item.text
        if image is None and text is None:
            raise InvalidRequest("send an image, a text, or both")
        given: tuple[tuple[Modality, bytes | str | None], ...] = (("image", image), ("text", text))
        for modality, value in given:
            if value is None and not self.head.accepts_missing(modality):
                raise ModalityRequired(
                    f"this bundle needs the {modality}: its fusion head was not trained to "
                    f"answer without one"
                )
        if item.explain:
            if not (self.head.accepts_missing("image") and self.head.accepts_missing("text")):
                raise ExplainUnsupported(
                    "explain is not available for this bundle: its fusion head cannot leave "
                    "the image or the text out"
                )
            if image is None or text is None:
                raise ExplainUnsupported("explain needs both the image and the text")
        if text is None:
            return item
        # Built directly: dataclasses.replace reads the fields anew on every call.
        return ClassifyInput(image, clean_text(text, self.max_text_chars), item.explain)
