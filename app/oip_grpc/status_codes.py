"""The service's errors as gRPC status codes: one mapping from each error's HTTP status, so
both protocols refuse the same requests for the same reasons."""

from __future__ import annotations

import grpc

from app.errors import RequestError

_BY_HTTP_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,  # malformed tensors, an item that cannot be classified
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,  # over a limit of ours: the request must change
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,  # overloaded, when overload answers 429
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,  # not ready, stopping, overloaded (503), memory busy
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(error: RequestError) -> grpc.StatusCode:
    """The gRPC code for ``error``: by its HTTP status, INTERNAL for any other 5xx."""
    return _BY_HTTP_STATUS.get(error.status_code, grpc.StatusCode.INTERNAL)


def trailing_metadata(error: RequestError) -> tuple[tuple[str, str], ...]:
    """The error's code, and ``retry-after`` when the HTTP answer has ``Retry-After``."""
    metadata = [("fusionserve-error-code", error.code)]
    retry_after = error.headers.get("Retry-After")
    if retry_after is not None:
        metadata.append(("retry-after", retry_after))
    return tuple(metadata)
