"""Property-based fuzzing of image decoding and text preparation.

Whatever the input, only our own ``RequestError`` subclasses may come out (they become 4xx
answers); anything else would be a 500. What does come out must be a well-formed tensor or
text. Derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bundle.manifest import ImagePreprocess
from app.errors import RequestError
from app.memory.memory_budget import MemoryBudget
from app.preprocess.decode_budget import DecodeBudget
from app.preprocess.decode_pace import DecodePace
from app.preprocess.image import ImageDecoder
from app.preprocess.text import TextTokenizer, clean_text
from tests.support.corpus import seed_images

T = TypeVar("T")

# Pillow warns (UserWarning) about damaged metadata it skips, such as corrupt EXIF, and goes
# on decoding. Outside pytest's filterwarnings=error that is what happens in production, so
# that is what is fuzzed here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SPEC = ImagePreprocess(
    color_mode="RGB",
    resize_short_side=36,
    crop_size=32,
    interpolation="bilinear",
    mean=(127.5, 127.5, 127.5),
    std=(64.0, 64.0, 64.0),
    layout="NCHW",
)
# Every value (0..255 - mean) / std can take.
LOWEST, HIGHEST = -127.5 / 64.0, 127.5 / 64.0
DECODE = ImageDecoder(SPEC, max_pixels=1_000_000, min_side=1, jpeg_draft=True)
# As the service decodes: the peak estimated from the (possibly damaged) header, reserved.
MEMORY = MemoryBudget(2**30)
SEEDS = seed_images()


def attempt(call: Callable[[], T]) -> T | RequestError:
    """The result of ``call``, or the ``RequestError`` it raised; anything else propagates."""
    try:
        return call()
    except RequestError as error:
        return error


def _decode_or_refuse(data: bytes) -> None:
    pixels = attempt(lambda: DECODE(data, DecodeBudget(MEMORY, DecodePace(), math.inf)))
    assert MEMORY.used == 0  # given back, whatever happened
    if isinstance(pixels, RequestError):
        assert 400 <= pixels.status_code < 500
        assert pixels.message
        return
    assert pixels.shape == (3, 32, 32)
    assert pixels.dtype == np.float32
    assert pixels.flags.c_contiguous
    assert np.isfinite(pixels).all()
    assert pixels.min() >= LOWEST
    assert pixels.max() <= HIGHEST


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_refuse(data)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    flips = draw(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), max_size=8)
    )
    for position, mask in flips:
        data[position] ^= mask
    end = draw(st.one_of(st.just(len(data)), st.integers(0, len(data))))
    return bytes(data[:end])


@FUZZ
@given(mutated_images())
def test_mutated_images(data: bytes) -> None:
    _decode_or_refuse(data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_header_byte_sweep(name: str) -> None:
    """Every byte of each header damaged in turn: deterministic, and it reaches the header
    parsers that random mutation rarely hits (it found TypeErrors in Pillow's TIFF reader)."""
    seed = SEEDS[name]
    for position in range(min(len(seed), 256)):
        for mask in (0x01, 0x10, 0x80, 0xFF):
            damaged = bytearray(seed)
            damaged[position] ^= mask
            _decode_or_refuse(bytes(damaged))


def test_seed_images_all_decode() -> None:
    """The mutation fuzz starts from valid files of every allowed format."""
    for data in SEEDS.values():
        assert DECODE(data).shape == (3, 32, 32)


MAX_CHARS = 40
TRICKY = "\x00\x07\x7f\x85\u00a0\u0301\u200b\u200d\u202e\u2066\u2028\ufeff\ufffd\uffff\U0001f431"
texts = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),  # lone surrogates
        st.sampled_from(TRICKY),
    ),
    max_size=60,
)


@FUZZ
@given(texts)
def test_clean_text(text: str) -> None:
    cleaned = attempt(lambda: clean_text(text, MAX_CHARS))
    if isinstance(cleaned, RequestError):
        assert cleaned.status_code == 422
        assert text.strip() == "" or text not in cleaned.message
        return
    assert 0 < len(cleaned) <= MAX_CHARS
    assert cleaned == cleaned.strip()
    assert unicodedata.is_normalized("NFC", cleaned)
    assert not any(unicodedata.category(c) in {"Cs", "Co", "Cn"} for c in cleaned)
    assert clean_text(cleaned, MAX_CHARS) == cleaned


@pytest.fixture(scope="module")
def tokenizer(tiny_bundle_dir: Path) -> TextTokenizer:
    return TextTokenizer(tiny_bundle_dir / "tokenizer.json", max_length=8)


@FUZZ
@given(text=texts)
def test_text_preparation(tokenizer: TextTokenizer, text: str) -> None:
    ids = attempt(lambda: tokenizer.encode(clean_text(text, MAX_CHARS)))
    if isinstance(ids, RequestError):
        assert ids.status_code == 422
        return
    assert ids.dtype == np.int64
    assert 0 < len(ids) <= 8
