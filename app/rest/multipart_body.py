"""A multipart/form-data body read as it streams in, within limits.

python-multipart's push parser (``MultipartParser``), fed the request's chunks directly:
measured on the tiny bundle's request (a 4 KB JPEG and a short text), 32 us against 142 us
for Starlette's ``request.form`` around the same parser, which wraps every file in an
``UploadFile`` over a ``SpooledTemporaryFile`` (``bench/overhead/multipart_parsers.py``;
defnull's ``multipart`` took 25 us, but it installs a module of the same name as the shim
python-multipart still ships, so the two cannot share an environment).

Fields and files up to ``SPOOL_BYTES`` are kept in memory, as views into the chunks they
arrived in, copied once at the part's end. A larger file goes to a temporary file as it
arrives, as Starlette spools it (written and read back in a thread): the chunks of an image
of megabytes are not all held until its part ends, which leaves the allocator holding the
memory after a burst of uploads.

The limits are the ones the form takes (``app.rest.forms.form_limits``), each checked as the
part streams in: file parts (those with a ``filename``) and other fields are counted, a text
field may not pass ``max_field_bytes`` and a file ``max_file_bytes``. Errors are the
service's: 413 for a limit, 400 for a body that is not multipart (naming what is wrong, never
quoting the body).
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import re
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import FieldTooLarge, MalformedForm, PayloadTooLarge, TooManyItems

# A part's value: a file's bytes, or a field's text.
PartValue = bytes | str

SPOOL_BYTES = 2**20  # a file part larger than this goes to a temporary file (as Starlette's)
MISSING_BOUNDARY = "Missing boundary in multipart."
INVALID = "Invalid multipart data."
MISSING_NAME = 'The Content-Disposition header field "name" must be provided.'


@dataclass(frozen=True)
class MultipartLimits:
    max_files: int  # parts with a filename
    max_fields: int  # parts without one
    max_field_bytes: int  # of each field
    max_file_bytes: int  # of each file
    items: int  # what the messages name: the items a request may carry


class _Collector:
    """python-multipart's callbacks: each part's name, kind and data, limits checked; the
    data of a large file part is left in ``to_write`` (for its temporary file) and the part
    in ``spooled``, for the caller to do the file's I/O off the event loop."""

    def __init__(self, limits: MultipartLimits, charset: str) -> None:
        self.limits = limits
        self.charset = charset
        self.parts: list[tuple[str, PartValue]] = []
        self.to_write: list[tuple[IO[bytes], bytes]] = []
        self.spooled: list[tuple[int, IO[bytes]]] = []  # (index in parts, file)
        self.files = 0
        self.fields = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._file = False
        self._chunks: list[memoryview] = []  # the part's data, while it is in memory
        self._spool: IO[bytes] | None = None
        self._size = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._chunks = []
        self._spool = None
        self._size = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        name, self._file = _name_and_kind(self._disposition)
        if name is None:
            raise MalformedForm(MISSING_NAME)
        self._name = _decoded(name, self.charset)
        if self._file:
            self.files += 1
            over = self.files > self.limits.max_files
        else:
            self.fields += 1
            over = self.fields > self.limits.max_fields
        if over:
            raise TooManyItems(
                f"too many form parts; at most {self.limits.items} items per request"
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._file and self._size > self.limits.max_file_bytes:
            raise PayloadTooLarge(f"image file is over {self.limits.max_file_bytes} bytes")
        if not self._file and self._size > self.limits.max_field_bytes:
            raise FieldTooLarge(f"a text field is over {self.limits.max_field_bytes} bytes")
        if self._spool is not None:
            self.to_write.append((self._spool, data[start:end]))
            return
        self._chunks.append(memoryview(data)[start:end])
        if self._file and self._size > SPOOL_BYTES:
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by read_multipart)
            self.spooled.append((-1, self._spool))  # closed by the caller whatever happens
            self.to_write.append((self._spool, b"".join(self._chunks)))
            self._chunks = []

    def on_part_end(self) -> None:
        if self._spool is not None:  # its data is read back once the body is parsed
            self.spooled[-1] = (len(self.parts), self._spool)
            self.parts.append((self._name, b""))
            return
        data = self._chunks[0].tobytes() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self.parts.append((self._name, data if self._file else _decoded(data, self.charset)))


async def read_multipart(
    content_type: str, chunks: AsyncIterable[bytes], limits: MultipartLimits
) -> list[tuple[str, PartValue]]:
    """The parts of a multipart body (``content_type`` its header), in order: each name
    with a file's bytes or a field's text (decoded with the body's charset, UTF-8 unless
    it says otherwise, else Latin-1 as Starlette does)."""
    boundary, charset = _boundary_and_charset(content_type)
    if not boundary:
        raise MalformedForm(MISSING_BOUNDARY)
    collector = _Collector(limits, charset)
    try:
        try:
            parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
            async for chunk in chunks:
                if not chunk:
                    continue
                parser.write(chunk)
                if collector.to_write:
                    writes, collector.to_write = collector.to_write, []
                    await asyncio.to_thread(_write, writes)
            parser.finalize()
        except FormParserError:
            raise MalformedForm(INVALID) from None
        for index, spool in collector.spooled:
            name, _ = collector.parts[index]
            collector.parts[index] = (name, await asyncio.to_thread(_read_back, spool))
    finally:
        for _, spool in collector.spooled:
            spool.close()
    return collector.parts


def _write(writes: list[tuple[IO[bytes], bytes]]) -> None:
    for spool, data in writes:
        spool.write(data)


def _read_back(spool: IO[bytes]) -> bytes:
    spool.seek(0)
    return spool.read()


# What every client writes (curl, requests, httpx, browsers): parsed without the general
# parser, which reads the rest (other orders, escapes, RFC 2231) the same way.
_SIMPLE_DISPOSITION = re.compile(rb'form-data; name="([^"\\\r\n]*)"(; filename="[^"\\\r\n]*")?')


def _name_and_kind(disposition: bytes) -> tuple[bytes | None, bool]:
    """A part's field name (None if it has none) and whether it is a file (has a
    ``filename``), from its Content-Disposition."""
    simple = _SIMPLE_DISPOSITION.fullmatch(disposition)
    if simple is not None:
        return simple[1], simple[2] is not None
    _, options = parse_options_header(disposition)
    return options.get(b"name"), b"filename" in options


_BOUNDARY = r"[0-9A-Za-z'()+_,./:=?-]{1,200}"
_SIMPLE_CONTENT_TYPE = re.compile(
    rf'multipart/form-data; ?boundary=(?:"({_BOUNDARY})"|({_BOUNDARY}))'
)


@functools.lru_cache(maxsize=64)
def _boundary_and_charset(content_type: str) -> tuple[bytes | None, str]:
    """The boundary and the charset a Content-Type names (most clients send the same one
    each time: remembered)."""
    simple = _SIMPLE_CONTENT_TYPE.fullmatch(content_type)
    if simple is not None:
        return (simple[1] or simple[2]).encode(), "utf-8"
    _, params = parse_options_header(content_type)
    return params.get(b"boundary") or None, _charset(params.get(b"charset"))


def _charset(declared: bytes | None) -> str:
    try:
        return codecs.lookup((declared or b"utf-8").decode("latin-1")).name
    except LookupError:
        return "latin-1"


def _decoded(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except UnicodeDecodeError:
        return data.decode("latin-1")
