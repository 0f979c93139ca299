"""The tokenizer a text source serves and the check that the service's tokenisation of it
gives the ids the source's own tokenizer gives.

The served ``tokenizer.json`` is the ``tokenizers`` tokenizer the source's ``AutoTokenizer``
runs (not the file on disk, which transformers may rebuild differently), without padding and
truncation (the service sets both). The check runs the service's own ``clean_text`` and
``TextTokenizer`` on probe texts; any difference means the source does work outside
tokenizer.json, and the source is refused.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from app.preprocess.text import TextTokenizer, clean_text
from models.encoders.encoder_sources import SourceError, inexpressible
from models.encoders.text_source_support import quiet_offline_transformers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Padding = Literal["longest", "max_length"]
# No character limit in the checks: the service's own limit is a setting, not preprocessing.
_NO_CHAR_LIMIT = 1_000_000

# Texts every loader tokenises both ways before accepting a source: plain, mixed case, longer
# than any max_length, non-Latin scripts, emoji (with a skin-tone modifier and a ZWJ sequence)
# and surrounding whitespace.
PROBE_TEXTS: tuple[str, ...] = (
    "a red running shoe",
    "Slim-Fit WOOL Trousers in Charcoal Grey, size 42!",
    " ".join(
        ["Lightweight summer dress with a floral print, short sleeves and a relaxed fit;"] * 12
    ),
    "日本語の説明：赤い靴",
    "حذاء جلدي أحمر للمكتب",
    "a dress 👗 with a thumbs up 👍🏽 and a family 👨‍👩‍👧",
    "   \t padded on both sides \n  ",
)


def load_fast_tokenizer(directory: Path, **kwargs: Any) -> PreTrainedTokenizerBase:
    """The checkpoint's own tokenizer (``AutoTokenizer``); refused unless it runs on a
    ``tokenizers`` backend, the only kind the service can run."""
    quiet_offline_transformers()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, **kwargs)
    except (OSError, ValueError, ImportError) as error:
        raise SourceError(
            f"{directory}: the tokenizer cannot be loaded: {error}", field="tokenizer"
        ) from error
    if not getattr(tokenizer, "is_fast", False):
        raise inexpressible(
            "tokenizer_class",
            type(tokenizer).__name__,
            "the service runs tokenizer.json files (the tokenizers library) only, and this "
            "tokenizer runs in Python",
        )
    return tokenizer


def serving_tokenizer_json(tokenizer: PreTrainedTokenizerBase) -> str:
    """The serialised ``tokenizers`` tokenizer the source runs, with its padding and
    truncation removed (the service sets both from the manifest)."""
    backend = tokenizer.backend_tokenizer
    data = json.loads(backend.to_str())
    data["padding"] = None
    data["truncation"] = None
    return json.dumps(data, ensure_ascii=False)


def prepend_lowercase(tokenizer_json: str) -> str:
    """``tokenizer_json`` with a ``Lowercase`` normalizer run first, as sentence-transformers'
    ``do_lower_case`` sets it (``Sequence([Lowercase(), *the existing normalizers])``)."""
    data = json.loads(tokenizer_json)
    normalizer = data.get("normalizer")
    steps: list[Any] = [{"type": "Lowercase"}]
    if normalizer is not None and normalizer.get("type") == "Sequence":
        steps += normalizer["normalizers"]
    elif normalizer is not None:
        steps.append(normalizer)
    data["normalizer"] = {"type": "Sequence", "normalizers": steps}
    return json.dumps(data, ensure_ascii=False)


def has_lowercase(tokenizer_json: str) -> bool:
    """Whether the normalizer is ``Lowercase`` or a sequence holding one (the check
    sentence-transformers makes before adding one for ``do_lower_case``)."""
    normalizer = json.loads(tokenizer_json).get("normalizer") or {}
    if normalizer.get("type") == "Lowercase":
        return True
    steps = (normalizer.get("normalizers") or []) if normalizer.get("type") == "Sequence" else []
    return any(step.get("type") == "Lowercase" for step in steps)


@contextmanager
def service_tokenizer(
    tokenizer_json: str,
    *,
    max_length: int,
    padding: Padding = "longest",
    pad_token_id: int | None = None,
    prompt: str = "",
) -> Iterator[TextTokenizer]:
    """The service's ``TextTokenizer`` over ``tokenizer_json``, configured as the manifest
    would configure it (no length buckets: a ``longest`` batch pads to ``max_length``)."""
    with tempfile.TemporaryDirectory(prefix="fusionserve-tokenizer-") as folder:
        path = Path(folder) / "tokenizer.json"
        path.write_text(tokenizer_json, encoding="utf-8")
        yield TextTokenizer(
            path, max_length, padding=padding, pad_token_id=pad_token_id, prompt=prompt
        )


def served_ids(tokenizer: TextTokenizer, texts: Sequence[str]) -> list[list[int]]:
    """The ids the service feeds for each text (cleaned, prompt first, truncated; unpadded)."""
    return [tokenizer.encode(clean_text(text, _NO_CHAR_LIMIT)).tolist() for text in texts]


def served_batch(tokenizer: TextTokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """``input_ids`` and ``attention_mask`` of one batch as the service builds it."""
    batch = tokenizer.pad([tokenizer.encode(clean_text(t, _NO_CHAR_LIMIT)) for t in texts])
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}


def default_pad_id(tokenizer_json: str, max_length: int) -> int:
    """The padding id the service uses when the manifest sets none."""
    with service_tokenizer(tokenizer_json, max_length=max_length) as tokenizer:
        return tokenizer.pad_id


def manifest_pad_id(
    tokenizer: PreTrainedTokenizerBase, tokenizer_json: str, max_length: int
) -> int | None:
    """The manifest's ``pad_token_id``: the tokenizer's padding id when the service would not
    pick it by itself, else None (which keeps the manifest readable by schema version 1)."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None or pad_id == default_pad_id(tokenizer_json, max_length):
        return None
    return int(pad_id)


def check_token_ids(
    source_ids: Callable[[Sequence[str]], list[list[int]]],
    tokenizer_json: str,
    *,
    max_length: int,
    padding: Padding = "longest",
    pad_token_id: int | None = None,
    prompt: str = "",
    texts: Sequence[str] = PROBE_TEXTS,
) -> None:
    """Refuse the source unless the served tokenisation of ``texts`` gives exactly the ids of
    the source's own (``source_ids``: unpadded for ``longest``, padded for ``max_length``)."""
    with service_tokenizer(
        tokenizer_json,
        max_length=max_length,
        padding=padding,
        pad_token_id=pad_token_id,
        prompt=prompt,
    ) as tokenizer:
        if padding == "max_length":
            served = served_batch(tokenizer, texts)["input_ids"].tolist()
        else:
            served = served_ids(tokenizer, texts)
    expected = source_ids(texts)
    for text, ours, theirs in zip(texts, served, expected, strict=True):
        if ours != theirs:
            raise inexpressible(
                "tokenizer",
                "tokenizer.json",
                f"the served tokenisation of {text[:40]!r} gives ids {ours[:12]}... but the "
                f"source's tokenizer gives {theirs[:12]}... (it does work outside "
                "tokenizer.json that the service cannot repeat)",
            )


def tokenizer_ids(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    prompt: str = "",
    pad_to_max_length: bool = False,
) -> list[list[int]]:
    """The ids the source's own tokenizer gives for ``prompt + text`` (truncated to
    ``max_length``, padded to it when ``pad_to_max_length``)."""
    encoded = tokenizer(
        [prompt + text for text in texts],
        truncation=True,
        max_length=max_length,
        padding="max_length" if pad_to_max_length else False,
    )
    return [list(ids) for ids in encoded["input_ids"]]


def check_no_token_types(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> None:
    """Refuse a tokenizer that gives single texts token types other than 0 (the graph feeds
    zeros)."""
    encoded = tokenizer(list(texts), truncation=True)
    types = encoded.get("token_type_ids")
    if types is not None and any(any(row) for row in types):
        raise inexpressible(
            "token_type_ids",
            "non-zero",
            "the source gives single texts non-zero token types, and the graph feeds zeros",
        )
