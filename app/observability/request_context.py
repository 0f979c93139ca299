"""The id of the request being handled, in a context variable: set by the request-id
middleware (``app.asgi.request_id``), read by every log line
(``app.observability.logging_setup``) and error body emitted on the request's behalf."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("fusionserve_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context, if any."""
    return request_id_var.get()
