"""One JSON error envelope for every error: ``{"error": {"code", "message", "request_id"}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.asgi.request_id import REQUEST_ID_HEADER, scope_request_id
from app.errors import InvalidRequest, PayloadTooLarge, RequestError, forget_tracebacks
from app.observability.request_context import current_request_id

logger = logging.getLogger(__name__)

# Told about every RequestError answered to a client (metrics count the refusals).
ErrorListener = Callable[[RequestError], None]


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    """The envelope; ``request_id`` defaults to the id of the request being handled."""
    request_id = request_id or current_request_id()
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    if request_id is not None:
        headers = (headers or {}) | {REQUEST_ID_HEADER: request_id}
    return JSONResponse(body, status_code=status, headers=headers)


def report_error(request: Request, error: RequestError) -> None:
    """Tell the app's error listener, if it has one, that ``error`` is being answered."""
    listener: ErrorListener | None = getattr(request.app.state, "error_listener", None)
    if listener is not None:
        listener(error)


def _describe(error: dict[str, object]) -> str:
    # Field location and reason only: the offending input is never echoed back.
    location = error.get("loc", ())
    if not isinstance(location, tuple | list):
        location = ()
    parts = [str(p) for p in location if p not in ("body", "query")]
    field = ".".join(parts) or "request"
    if error.get("type") == "missing":
        return f"field '{field}' is required"
    return f"field '{field}': {error.get('msg', 'invalid value')}"


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    report_error(request, exc)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = "; ".join(_describe(dict(e)) for e in exc.errors())
    return error_response(
        InvalidRequest.status_code, InvalidRequest.code, message or "invalid request"
    )


# Codes shared with our own exceptions, whatever the framework raised.
_CODES = {PayloadTooLarge.status_code: PayloadTooLarge.code}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    code = _CODES.get(exc.status_code) or phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return error_response(exc.status_code, code, message)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette answers unhandled errors outside every middleware, so the request id comes
    # from the scope, not from the context (which the request-id middleware has left).
    request_id = scope_request_id(request.scope)
    logger.exception(
        "unhandled error on %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": request_id} if request_id else None,
    )
    return error_response(500, "internal_error", "internal server error", request_id=request_id)


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
_HANDLERS: tuple[tuple[type[Exception], Handler], ...] = (
    (RequestError, _request_error),
    (RequestValidationError, _validation_error),
    (StarletteHTTPException, _http_error),
)


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, handler in _HANDLERS:
        app.add_exception_handler(exc_type, handler)
    app.add_exception_handler(Exception, _unexpected_error)


async def error_answer(request: Request, exc: Exception) -> Response:
    """What the handlers ``install_error_handlers`` installs answer to ``exc`` (for routes
    that run outside Starlette's exception middleware: ``app.asgi.direct_routes``). Once
    answered (and logged), ``exc`` and the errors it was raised from lose their tracebacks
    (``app.errors.forget_tracebacks``)."""
    try:
        for exc_type, handler in _HANDLERS:
            if isinstance(exc, exc_type):
                return await handler(request, exc)
        return await _unexpected_error(request, exc)
    finally:
        forget_tracebacks(exc)
