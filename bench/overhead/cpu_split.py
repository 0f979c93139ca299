"""Where FusionServe's server CPU per request goes on the tiny bundle: each piece of work one
request needs, timed alone in this process on the suite's own request, single-threaded.

The pieces: parsing the multipart body (as the route runs it), reading
the image's header, decoding and preprocessing the image, the request policy and
tokenising the text, the three models per item (at batch 1 and at batch 8: under load the
batcher runs batches of several), and building and encoding the JSON answer. What the
server spends beyond their sum is the serving layer: HTTP parsing, the ASGI middleware and
routing, asyncio tasks and futures, the hand-offs to and from the inference thread, metrics
and logging. The suite (``bench.overhead.overhead_benchmark``) records it beside its runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from starlette.requests import Request
from starlette.types import Message

from app.config.settings import Settings
from app.core.classification import ClassifiedItem, ClassifyInput, Timings
from app.core.engine import build_engine
from app.rest.forms import form_limits, parse_form
from app.rest.rest_answers import classify_json
from app.rest.rest_forms import ClassifyForm
from bench.harness.payloads import RequestSet
from bench.harness.statistics import median

ROUNDS = 7  # timed rounds per piece; the median round is kept
T = TypeVar("T")


def per_call_us(work: Callable[[], object], calls: int) -> float:
    """Median over ``ROUNDS`` rounds of microseconds per call of ``work``."""
    work()
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return float(median(rounds, digits=None))


def _multipart_us(body: bytes, content_type: str, settings: Settings, calls: int) -> float:
    """Microseconds to parse ``body`` as the route does (``parse_form`` within the
    settings' limits, the fields validated) down to the image's bytes."""
    limits = form_limits(settings)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "headers": [(b"content-type", content_type.encode())],
        "query_string": b"",
    }

    async def parse() -> bytes:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        form = (await parse_form(Request(scope, receive), ClassifyForm, limits)).fields
        assert form.image is not None
        return form.image

    return per_call_us(lambda: run_to_completion(parse()), calls)


def run_to_completion(work: Coroutine[Any, Any, T]) -> T:
    """The result of ``work``, a coroutine that never waits (its awaits all return at once):
    run without an event loop, whose own cost per call is not the parser's."""
    try:
        work.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    work.close()
    raise RuntimeError("the parse waited for something")


def measure_split(bundle: Path, requests: RequestSet, calls: int = 2000) -> dict[str, Any]:
    """Microseconds per request of each piece (see the module's docstring)."""
    settings = Settings(bundle_path=bundle, intra_op_threads=1, inter_op_threads=1)
    engine = build_engine(settings)
    pipeline, decoder = engine.pipeline, engine.pipeline.decoder
    image, text = requests.images[0].data, requests.texts[0]
    body, content_type = requests.body(0), requests.content_type
    items = [engine.prepare(image, text) for _ in range(8)]
    result = pipeline.run_items(items[:1])[0]
    answered = ClassifiedItem(result.probabilities, None, Timings(0.001, 0.002))
    manifest = engine.bundle.manifest
    pieces = {
        "multipart_parse_us": _multipart_us(body, content_type, settings, calls),
        "image_header_us": per_call_us(lambda: decoder.open(image).close(), calls),
        "image_decode_us": per_call_us(lambda: decoder.decode(decoder.open(image)), calls),
        "policy_and_tokenise_us": per_call_us(
            lambda: pipeline.tokenizer.encode(
                str(engine.policy.check(ClassifyInput(image, text)).text)
            ),
            calls,
        ),
        "models_batch_1_us": per_call_us(lambda: pipeline.run_items(items[:1]), calls),
        "models_batch_8_per_item_us": per_call_us(lambda: pipeline.run_items(items), calls // 8)
        / 8,
        "answer_json_us": per_call_us(lambda: classify_json(answered, manifest, None), calls),
    }
    # The decode piece opened the image too: count the header once.
    pieces["image_decode_us"] -= pieces["image_header_us"]
    counted = [key for key in pieces if key != "models_batch_1_us"]
    return {
        "pieces_us": {key: round(value, 1) for key, value in pieces.items()},
        "work_us": round(sum(pieces[key] for key in counted), 1),
        "work_counts": counted,
    }
