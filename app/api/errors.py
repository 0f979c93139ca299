"""One JSON error envelope for every error: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.forms import form_error
from app.errors import InvalidRequest, PayloadTooLarge, RequestError

logger = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


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


def _render(error: RequestError) -> JSONResponse:
    return error_response(error.status_code, error.code, error.message, error.headers)


async def _request_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return _render(exc)


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
    if (error := form_error(exc, request.app.state.settings)) is not None:
        return _render(error)
    phrase = HTTPStatus(exc.status_code).phrase
    code = _CODES.get(exc.status_code) or phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return error_response(exc.status_code, code, message)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
