"""The multipart reader: parts in order, files as bytes and fields as text, each limit checked
as the part streams in, and the service's errors for bodies that are not multipart."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.errors import FieldTooLarge, MalformedForm, PayloadTooLarge, RequestError, TooManyItems
from app.rest.multipart_body import MultipartLimits, PartValue, read_multipart

LIMITS = MultipartLimits(max_files=2, max_fields=3, max_field_bytes=16, max_file_bytes=64, items=2)
TYPE = "multipart/form-data; boundary=xyz"


def body(*parts: tuple[bytes, bytes]) -> bytes:
    """A multipart body of ``(Content-Disposition, content)`` parts, boundary ``xyz``."""
    out = b"".join(
        b"--xyz\r\nContent-Disposition: " + d + b"\r\n\r\n" + c + b"\r\n" for d, c in parts
    )
    return out + b"--xyz--\r\n"


def read(
    data: bytes, content_type: str = TYPE, limits: MultipartLimits = LIMITS, chunk: int = 7
) -> list[tuple[str, PartValue]]:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):  # streamed in small pieces
            yield data[start : start + chunk]

    return asyncio.run(read_multipart(content_type, chunks(), limits))


def test_parts_in_order_files_as_bytes_fields_as_text() -> None:
    parts = read(
        body(
            (b'form-data; name="image"; filename="a.png"', b"\x89PNG\x00\xff"),
            (b'form-data; name="text"', "caf\u00e9".encode()),
            (b'form-data; name="top_k"', b"3"),
        )
    )
    assert parts == [("image", b"\x89PNG\x00\xff"), ("text", "caf\u00e9"), ("top_k", "3")]


def test_dispositions_other_clients_write_are_read_alike() -> None:
    parts = read(
        body(
            (b'form-data; filename="b.jpg"; name="image"', b"x"),  # another order
            (b"form-data; name=text", b"plain"),  # unquoted
            (b'form-data; name="say \\"hi\\""', b"q"),  # an escaped quote
        )
    )
    assert parts == [("image", b"x"), ("text", "plain"), ('say "hi"', "q")]


def test_a_field_in_another_charset_and_undecodable_text() -> None:
    latin = read(
        body((b'form-data; name="t"', "\u00e9".encode("latin-1"))), TYPE + "; charset=latin-1"
    )
    assert latin == [("t", "\u00e9")]
    assert read(body((b'form-data; name="t"', b"\xff\xfe"))) == [("t", "\xff\xfe")]  # as Latin-1


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            body(*[(b'form-data; name="i"; filename="f"', b"x")] * 3),
            TooManyItems,
            "too many form parts; at most 2 items per request",
        ),
        (body(*[(b'form-data; name="t"', b"x")] * 4), TooManyItems, "at most 2 items"),
        (body((b'form-data; name="t"', b"x" * 17)), FieldTooLarge, "a text field is over 16 bytes"),
        (
            body((b'form-data; name="i"; filename="f"', b"x" * 65)),
            PayloadTooLarge,
            "image file is over 64 bytes",
        ),
        (body((b"form-data", b"x")), MalformedForm, 'header field "name" must be provided'),
        (b"not multipart at all", MalformedForm, "Invalid multipart data."),
    ],
)
def test_limits_and_malformed_bodies(data: bytes, error: type[RequestError], message: str) -> None:
    with pytest.raises(error) as raised:
        read(data)
    assert message in raised.value.message


def test_a_limit_is_exact() -> None:
    at = body(
        (b'form-data; name="t"', b"x" * 16), (b'form-data; name="i"; filename="f"', b"y" * 64)
    )
    assert [len(value) for _, value in read(at)] == [16, 64]


def test_no_boundary_is_malformed() -> None:
    with pytest.raises(MalformedForm, match="Missing boundary in multipart."):
        read(body((b'form-data; name="t"', b"x")), "multipart/form-data")


def test_a_part_cut_off_before_its_boundary_is_not_a_part() -> None:
    # As python-multipart (and so Starlette) reads it: the form then lacks that field.
    cut = b'--xyz\r\nContent-Disposition: form-data; name="t"\r\n\r\nabc'
    assert read(cut) == []
    assert read(body((b'form-data; name="a"', b"1")) + cut[:-3]) == [("a", "1")]


def test_a_large_file_goes_through_a_temporary_file_and_comes_back_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[Any] = []
    real = tempfile.TemporaryFile

    def recorded() -> Any:
        opened.append(real())
        return opened[-1]

    monkeypatch.setattr("app.rest.multipart_body.SPOOL_BYTES", 20)
    monkeypatch.setattr("app.rest.multipart_body.tempfile.TemporaryFile", recorded)
    big, small = bytes(range(60)), b"0123456789"
    parts = read(
        body(
            (b'form-data; name="i"; filename="a"', big),
            (b'form-data; name="t"', b"text"),
            (b'form-data; name="j"; filename="b"', small),
        )
    )
    assert parts == [("i", big), ("t", "text"), ("j", small)]
    assert len(opened) == 1  # only the part over SPOOL_BYTES
    assert opened[0].closed
    with pytest.raises(PayloadTooLarge):  # a failed body closes its files too
        read(body((b'form-data; name="i"; filename="a"', b"x" * 65)))
    assert all(spool.closed for spool in opened)
