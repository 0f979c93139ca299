"""Text validation and tokenisation with the bundle's ``tokenizer.json`` (HF ``tokenizers``)."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Tokenizer

from app.errors import InvalidText

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cn"})
_ALLOWED_CONTROLS = frozenset("\t\n\r")


@dataclass(frozen=True)
class TokenBatch:
    """Padded token arrays for one batch, int64 as BERT-style ONNX graphs expect."""

    input_ids: np.ndarray
    attention_mask: np.ndarray


def clean_text(text: str, max_chars: int) -> str:
    """NFC-normalise and validate one description. Never echoes the text in errors.

    Refused: text with nothing visible (only whitespace and format characters), text over
    ``max_chars`` code points after normalising, and control characters other than tab and
    newlines, surrogates, private-use and unassigned code points. Format characters (ZWJ in
    emoji sequences, bidirectional marks in mixed-script text) are kept: they are legitimate
    in descriptions, the tokenizer decides what they mean, and text is never shown back.
    """
    normalized = unicodedata.normalize("NFC", text).strip()
    # Letters, digits, punctuation and spaces (no tab or newline), most descriptions: once
    # stripped, visible unless empty, and no character to refuse; checked at a tenth of the
    # cost of looking at each character.
    plain = normalized.isascii() and normalized.isprintable()
    if not normalized or (
        not plain
        and all(unicodedata.category(char) == "Cf" or char.isspace() for char in normalized)
    ):
        raise InvalidText("text must not be empty")
    if len(normalized) > max_chars:
        raise InvalidText(f"text is {len(normalized)} characters; the limit is {max_chars}")
    if plain:
        return normalized
    for char in normalized:
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise InvalidText(
                f"text contains a control, surrogate or unassigned character (U+{ord(char):04X})"
            )
    return normalized


class TextTokenizer:
    """Tokenise single texts (before batching) and pad them together (when batching).

    ``prompt`` is prepended to every text before tokenising (sentence-transformers' prompts);
    ``padding`` is ``longest`` (a batch padded to the smallest length bucket that fits it) or
    ``max_length`` (every batch padded to ``max_length``, for graphs without a mask);
    ``pad_token_id`` overrides the tokenizer file's own padding id. The token ids of the
    last ``memo_size`` distinct texts are kept (an LRU; 0 keeps none): descriptions repeat
    in real traffic, which is why the service keeps their embeddings too
    (``app.core.text_cache``), and tokenising costs ~35 us of a request's CPU.
    """

    def __init__(
        self,
        tokenizer_path: Path,
        max_length: int,
        length_buckets: Sequence[int] = (),
        *,
        padding: Literal["longest", "max_length"] = "longest",
        pad_token_id: int | None = None,
        prompt: str = "",
        memo_size: int = 0,
    ) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # Padding happens per batch in pad(); the file's own padding id is kept for it.
        file_padding = self._tokenizer.padding
        pad_token = self._tokenizer.token_to_id("[PAD]")
        if pad_token_id is not None:
            self.pad_id = pad_token_id
        elif file_padding:
            self.pad_id = int(file_padding["pad_id"])
        else:
            self.pad_id = pad_token if pad_token is not None else 0
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        self.max_length = max_length
        self.prompt = prompt
        # Padded lengths come from a small fixed set, so ONNX Runtime sees few input shapes
        # and its memory arena stays flat under varied traffic.
        buckets = {b for b in length_buckets if 0 < b < max_length} if padding == "longest" else ()
        self.length_buckets = sorted(set(buckets) | {max_length})
        # functools' LRU: thread-safe (texts are tokenised in the decode pool too), and an
        # error (a text without tokens) is raised again each time, never kept. The memo
        # holds the tokenizer, not this object (which would make a reference cycle).
        encode = functools.partial(_token_ids, self._tokenizer, prompt)
        self._encode: Callable[[str], np.ndarray] = (
            functools.lru_cache(maxsize=memo_size)(encode) if memo_size else encode
        )

    def encode(self, text: str) -> np.ndarray:
        """Token ids of one (already cleaned) text, its prompt first, truncated to
        ``max_length``; read-only, as the memo shares them between requests."""
        return self._encode(text)

    def pad(self, sequences: Sequence[np.ndarray]) -> TokenBatch:
        """Right-pad token id sequences to the smallest length bucket that fits them all."""
        longest = max(len(ids) for ids in sequences)
        length = next(b for b in self.length_buckets if b >= longest)
        input_ids = np.full((len(sequences), length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
        for row, ids in enumerate(sequences):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return TokenBatch(input_ids=input_ids, attention_mask=attention_mask)


def _token_ids(tokenizer: Tokenizer, prompt: str, text: str) -> np.ndarray:
    ids = np.asarray(tokenizer.encode(prompt + text).ids, dtype=np.int64)
    if ids.size == 0:
        # An empty sequence would be all padding: pooled over nothing, NaN downstream.
        raise InvalidText("text has no tokens the model can read")
    ids.flags.writeable = False
    return ids
