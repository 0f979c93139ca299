from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidText
from app.preprocess.text import TextTokenizer, clean_text


def test_clean_text_normalises_to_nfc_and_strips() -> None:
    decomposed = "  Cafe\u0301 chair \n"
    assert clean_text(decomposed, 100) == "Caf\u00e9 chair"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("x" * 11, "limit is 10"),
        ("bad\x00byte", "U+0000"),
        ("lone \ud800 surrogate", "U+D800"),
        ("bell \x07", "U+0007"),
    ],
)
def test_clean_text_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidText, match=re.escape(message)) as caught:
        clean_text(text, 10 if message == "limit is 10" else 100)
    assert text.strip() == "" or text not in caught.value.message


def test_tabs_and_newlines_are_fine() -> None:
    assert clean_text("a\tred\ncat", 100) == "a\tred\ncat"


def test_printable_ascii_is_kept_stripped_within_the_limit() -> None:
    """The common case's short cut: every printable ASCII character is allowed; only an empty
    (or all-space) text and the length limit refuse."""
    rng = np.random.default_rng(7)
    alphabet = [chr(c) for c in range(0x20, 0x7F)] + [" "] * 20
    texts = ["", " ", "     ", "x", " x ", "~" * 10, " " + "y" * 10 + " ", "z" * 11]
    texts += ["".join(rng.choice(alphabet, size=rng.integers(0, 16))) for _ in range(500)]
    for text in texts:
        kept = text.strip(" ")
        if not kept:
            with pytest.raises(InvalidText, match="empty"):
                clean_text(text, 10)
        elif len(kept) > 10:
            with pytest.raises(InvalidText, match=f"text is {len(kept)} characters"):
                clean_text(text, 10)
        else:
            assert clean_text(text, 10) == kept


def test_tokenize_truncates_and_pads(tiny_bundle_dir: Path) -> None:
    tokenizer = TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=4)
    short = tokenizer.encode("a cat")
    long = tokenizer.encode("the small red cat photo of a big blue dog")
    unknown = tokenizer.encode("zebra")
    assert short.tolist() == [2, 6]
    assert len(long) == 4
    assert unknown.tolist() == [1]
    batch = tokenizer.pad([short, long])
    assert batch.input_ids.dtype == np.int64
    assert batch.input_ids.tolist() == [[2, 6, 0, 0], long.tolist()]
    assert batch.attention_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_fixed_padding_pads_every_batch_to_max_length(tiny_bundle_dir: Path) -> None:
    tokenizer = TextTokenizer(
        tiny_bundle_dir / "tokenizer.json",
        max_length=6,
        length_buckets=(2, 4),
        padding="max_length",
        pad_token_id=5,
    )
    batch = tokenizer.pad([tokenizer.encode("a cat")])
    assert batch.input_ids.tolist() == [[2, 6, 5, 5, 5, 5]]
    assert batch.attention_mask.tolist() == [[1, 1, 0, 0, 0, 0]]
    bucketed = TextTokenizer(
        tiny_bundle_dir / "tokenizer.json", max_length=6, length_buckets=(2, 4)
    )
    assert bucketed.pad([bucketed.encode("a cat")]).input_ids.tolist() == [[2, 6]]


def test_the_prompt_comes_first_and_counts_towards_max_length(tiny_bundle_dir: Path) -> None:
    plain = TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=4)
    prompted = TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=4, prompt="the ")
    the = plain.encode("the").tolist()
    assert prompted.encode("a cat").tolist() == the + plain.encode("a cat").tolist()
    assert len(prompted.encode("a small red cat photo")) == 4


def test_the_memo_shares_a_repeated_texts_ids_read_only(tiny_bundle_dir: Path) -> None:
    plain = TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=4)
    memo = TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=4, memo_size=2)
    first = memo.encode("a cat")
    assert memo.encode("a cat") is first
    assert first.tolist() == plain.encode("a cat").tolist() == [2, 6]
    assert not first.flags.writeable
    assert not plain.encode("a cat").flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 0


def test_the_memo_keeps_the_last_texts_only(tiny_bundle_dir: Path) -> None:
    memo = TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=4, memo_size=2)
    cat, dog = memo.encode("a cat"), memo.encode("a dog")
    assert memo.encode("a cat") is cat  # now the most recent
    memo.encode("a bird")  # evicts "a dog", the least recently used
    assert memo.encode("a cat") is cat
    again = memo.encode("a dog")  # tokenised again
    assert again is not dog
    assert again.tolist() == dog.tolist()


def test_a_text_without_tokens_is_refused_every_time(tiny_bundle_dir: Path) -> None:
    memo = TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=4, memo_size=2)
    for _ in range(2):
        with pytest.raises(InvalidText, match="no tokens"):
            memo.encode(" ")
