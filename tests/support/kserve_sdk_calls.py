"""KServe's Python SDK, unmodified, calling a FusionServe server: run by the python of the kserve
venv (``bench/harness/venvs.py``), never imported by the suite. The SDK cannot share the suite's
process: its gRPC stubs register the same protobuf symbols (``inference.*``) as tritonclient's,
which the service imports. Reads a JSON list of calls on stdin and prints a JSON list with one
outcome per call, ``{"ok": ...}`` or ``{"error": ...}`` as the SDK surfaced it. Driven by
``tests/support/kserve_sdk.py``.

A call: ``client`` (``rest`` or ``grpc``), ``op`` (``infer``, ``live``, ``ready``,
``model_ready``), ``url`` (REST base URL or gRPC ``host:port``), ``model`` (the model the client
is asked for), and for ``infer``: ``body_model`` (the ``InferRequest``'s ``model_name``; the model
by default), ``images`` (base64) and ``texts`` (either may be null), ``binary`` (inputs as binary
data, else JSON with the images base64 as users must send them; over gRPC, raw contents, else
typed ``bytes_contents``), ``outputs`` (``[name, binary]`` pairs, or null for all), ``id``,
``version`` (the ``InferRequest``'s ``model_version``, which only its gRPC message carries),
``headers``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import (
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    InferResponse,
    RESTConfig,
)
from kserve.protocol.infer_type import RequestedOutput


def _inputs(call: dict[str, Any]) -> list[InferInput]:
    images = call.get("images")
    texts = call.get("texts")
    binary = call.get("binary", True)
    inputs = []
    if images is not None:
        # JSON cannot carry raw bytes: there the images go as their base64 text.
        as_text = not binary and call["client"] == "rest"
        inputs.append(_tensor("image", images if as_text else _decoded(images), binary=binary))
    if texts is not None:
        inputs.append(_tensor("text", texts, binary=binary))
    return inputs


def _decoded(images: list[str]) -> list[bytes]:
    return [base64.b64decode(image) for image in images]


def _tensor(name: str, values: list[Any], *, binary: bool) -> InferInput:
    """As KServe's docs write an input: binary data from a numpy array, or the values as its
    data (JSON over REST, typed ``bytes_contents`` over gRPC)."""
    if not binary:
        return InferInput(name, [len(values)], "BYTES", data=values)
    tensor = InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array(values, dtype=np.object_), binary_data=True)
    return tensor


def _request(call: dict[str, Any]) -> InferRequest:
    outputs = call.get("outputs")
    requested = None
    if outputs is not None:
        requested = [RequestedOutput(name, {"binary_data": binary}) for name, binary in outputs]
    return InferRequest(
        model_name=call.get("body_model", call["model"]),
        infer_inputs=_inputs(call),
        request_id=call.get("id"),
        request_outputs=requested,
        model_version=call.get("version"),
    )


def _answer(response: InferResponse) -> dict[str, Any]:
    outputs = {}
    for output in response.outputs:
        array = output.as_numpy()
        data = [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1).tolist()]
        outputs[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "dtype": str(array.dtype),
            "data": data,
        }
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": outputs,
    }


async def _rest(call: dict[str, Any]) -> Any:
    config = RESTConfig(protocol="v2", timeout=30)
    async with InferenceRESTClient(config) as client:
        url, headers = call["url"], call.get("headers")
        if call["op"] == "live":
            return await client.is_server_live(url, headers=headers)
        if call["op"] == "ready":
            return await client.is_server_ready(url, headers=headers)
        if call["op"] == "model_ready":
            return await client.is_model_ready(url, call["model"], headers=headers)
        request = _request(call)
        return _answer(await client.infer(url, request, model_name=call["model"], headers=headers))


async def _grpc(call: dict[str, Any]) -> Any:
    headers = list((call.get("headers") or {}).items())
    async with InferenceGRPCClient(call["url"], timeout=30) as client:
        if call["op"] == "live":
            return await client.is_server_live(headers=headers)
        if call["op"] == "ready":
            return await client.is_server_ready(headers=headers)
        if call["op"] == "model_ready":
            return await client.is_model_ready(call["model"], headers=headers)
        return _answer(await client.infer(_request(call), headers=headers))


async def _outcome(call: dict[str, Any]) -> dict[str, Any]:
    try:
        if call["client"] == "rest":
            return {"ok": await _rest(call)}
        return {"ok": await _grpc(call)}
    except httpx.HTTPStatusError as exc:
        response = exc.response
        return {
            "error": {
                "type": type(exc).__name__,
                "status": response.status_code,
                "message": str(exc),
                "retry_after": response.headers.get("retry-after"),
            }
        }
    except grpc.aio.AioRpcError as exc:
        return {
            "error": {
                "type": type(exc).__name__,
                "code": exc.code().name,
                "details": exc.details(),
                "trailing": dict(exc.trailing_metadata() or ()),
            }
        }


async def _main() -> None:
    calls = json.load(sys.stdin)
    outcomes = [await _outcome(call) for call in calls]
    json.dump(outcomes, sys.stdout)


if __name__ == "__main__":
    asyncio.run(_main())
