"""Multipart parsers on the tiny bundle's request (a 64x64 JPEG and a short text, 4.6 KB), in
this process, single-threaded: what reading /classify's form costs each way.

- ``starlette_form``: Starlette's ``request.form`` within the service's limits, down to the
  image's bytes (what the route ran before issue 26: an ``UploadFile`` over a
  ``SpooledTemporaryFile`` per file);
- ``python_multipart_bare``: python-multipart's ``MultipartParser`` with callbacks that only
  collect each part's headers and data (the floor for that library);
- ``service_parse_form``: the route's own path now (``app.rest.forms.parse_form``: the parser
  of ``app.rest.multipart_body``, the limits, the form's fields checked and validated);
- ``defnull_multipart``: defnull's ``multipart`` push parser, timed in its own venv (its
  module has the name of the shim python-multipart installs).

    python -m bench.overhead.multipart_parsers      # prints and writes the results file
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import Message

from app.config.settings import Settings
from app.rest.forms import form_limits, parse_form
from app.rest.rest_forms import ClassifyForm
from bench.harness.paths import RESULTS_DIR
from bench.harness.payloads import tiny_requests
from bench.harness.venvs import ensure, versions
from bench.overhead.cpu_split import per_call_us, run_to_completion

RESULTS = RESULTS_DIR / "multipart-parsers.json"
CALLS = 3000

# Run by the ``multipart`` venv's python: the body's path, the boundary and the calls in argv;
# prints microseconds per call (the median of 7 rounds, as per_call_us times).
_DEFNULL = """
import statistics, sys, time
import multipart
body = open(sys.argv[1], "rb").read()
boundary, calls = sys.argv[2], int(sys.argv[3])
def parse():
    parts, segment, chunks = [], None, []
    with multipart.PushMultipartParser(boundary) as parser:
        for event in parser.parse(body):
            if isinstance(event, multipart.MultipartSegment):
                segment, chunks = event, []
            elif event:
                chunks.append(event)
            else:
                parts.append((segment.name, segment.filename, b"".join(chunks)))
        parser.parse(b"")
    return parts
parse()
rounds = []
for _ in range(7):
    start = time.perf_counter()
    for _ in range(calls):
        parse()
    rounds.append((time.perf_counter() - start) / calls * 1e6)
print(statistics.median(rounds))
"""


def _scope(content_type: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "headers": [(b"content-type", content_type.encode())],
        "query_string": b"",
    }


def _receive_once(body: bytes) -> Any:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def starlette_form_us(body: bytes, content_type: str, settings: Settings) -> float:
    items = settings.max_items_per_request
    limits = {
        "max_files": items,
        "max_fields": items + 4,
        "max_part_size": settings.max_text_field_bytes,
    }

    async def parse() -> bytes:
        request = Request(_scope(content_type), _receive_once(body))
        async with request.form(**limits) as form:
            image = form["image"]
            assert not isinstance(image, str)
            return await image.read()

    return per_call_us(lambda: run_to_completion(parse()), CALLS)


def python_multipart_bare_us(body: bytes, boundary: bytes) -> float:
    def parse() -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
        parts: list[tuple[list[tuple[bytes, bytes]], bytes]] = []
        headers: list[tuple[bytes, bytes]] = []
        data: list[bytes] = []
        field, value = [b""], [b""]

        def header_end() -> None:
            headers.append((field[0], value[0]))
            field[0] = value[0] = b""

        def part_end() -> None:
            parts.append((list(headers), b"".join(data)))
            headers.clear()
            data.clear()

        callbacks: Any = {
            "on_header_field": lambda d, s, e: field.__setitem__(0, field[0] + d[s:e]),
            "on_header_value": lambda d, s, e: value.__setitem__(0, value[0] + d[s:e]),
            "on_header_end": header_end,
            "on_part_data": lambda d, s, e: data.append(d[s:e]),
            "on_part_end": part_end,
        }
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
        return parts

    return per_call_us(parse, CALLS)


def service_parse_form_us(body: bytes, content_type: str, settings: Settings) -> float:
    limits = form_limits(settings)

    async def parse() -> bytes:
        request = Request(_scope(content_type), _receive_once(body))
        form = (await parse_form(request, ClassifyForm, limits)).fields
        assert form.image is not None
        return form.image

    return per_call_us(lambda: run_to_completion(parse()), CALLS)


def defnull_multipart_us(body: bytes, boundary: bytes) -> float:
    python = ensure("multipart")
    with tempfile.NamedTemporaryFile(suffix=".bin") as saved:
        saved.write(body)
        saved.flush()
        completed = subprocess.run(
            [str(python), "-c", _DEFNULL, saved.name, boundary.decode(), str(CALLS)],
            capture_output=True,
            text=True,
            check=True,
        )
    return float(completed.stdout.strip())


def measure() -> dict[str, Any]:
    requests = tiny_requests()
    body, content_type = requests.body(0), requests.content_type
    boundary = parse_options_header(content_type)[1][b"boundary"]
    settings = Settings()
    parsers_us = {
        "starlette_form": starlette_form_us(body, content_type, settings),
        "python_multipart_bare": python_multipart_bare_us(body, boundary),
        "service_parse_form": service_parse_form_us(body, content_type, settings),
        "defnull_multipart": defnull_multipart_us(body, boundary),
    }
    return {
        "body_bytes": len(body),
        "calls": CALLS,
        "parsers_us": {name: round(us, 1) for name, us in parsers_us.items()},
        "defnull_multipart_version": versions("multipart")["multipart"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead.multipart_parsers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = measure()
    print(json.dumps(results, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
