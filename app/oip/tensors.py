"""Tensor data in the binary tensor data extension's layout, and in JSON.

Binary data is little-endian, row-major, without padding. A BYTES element is a 4-byte
unsigned little-endian length followed by that many bytes. In JSON, tensor data is a flat or
a nested (row-major) list of elements.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.errors import InvalidTensor, quoted_name

BYTES = "BYTES"
FP32 = "FP32"

_LENGTH = struct.Struct("<I")


# Names that may be quoted back in an error; others are client input of any shape.
def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def serialize_bytes(elements: Sequence[bytes]) -> bytes:
    """BYTES elements, each behind its length."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def deserialize_bytes(data: bytes | memoryview, count: int, name: str) -> list[bytes]:
    """Exactly ``count`` BYTES elements that fill ``data``; ``InvalidTensor`` otherwise."""
    view = memoryview(data)
    elements: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(elements) == count:
            raise InvalidTensor(
                f"input {quoted_name(name)}: {len(view) - offset} bytes left after its {count} "
                "elements"
            )
        if offset + _LENGTH.size > len(view):
            raise InvalidTensor(
                f"input {quoted_name(name)}: element {len(elements)} has a truncated length"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise InvalidTensor(
                f"input {quoted_name(name)}: element {len(elements)} is {length} bytes but only "
                f"{len(view) - offset} remain"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise InvalidTensor(
            f"input {quoted_name(name)}: {len(elements)} elements, its shape says {count}"
        )
    return elements


def fp32_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def flatten(data: list[Any], count: int, name: str) -> list[Any]:
    """The elements of JSON tensor data, flat or nested row-major; exactly ``count`` of them."""
    flat: list[Any] = []
    pending: list[Any] = list(reversed(data))
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(reversed(item))
        else:
            flat.append(item)
        if len(flat) > count:
            break
    if len(flat) != count:
        found = f"more than {count}" if len(flat) > count else str(len(flat))
        raise InvalidTensor(
            f"input {quoted_name(name)}: {found} elements in data, its shape says {count}"
        )
    return flat
