"""Logging set-up: one handler on the root logger, JSON or text, every line with its request id.

uvicorn's own loggers (``uvicorn.error``, ``uvicorn.access``) lose their handlers and
propagate to the root, so that they share the format. ``fusionserve serve`` calls
``setup_logging`` and starts uvicorn with ``log_config=None``; ``create_app`` calls it when
``configure_logging`` is set, which is how ``uvicorn --factory app.main:create_app`` gets the
same logs (uvicorn configures its loggers before it calls the factory).
"""

from __future__ import annotations

import logging
from typing import Literal, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from app.observability.request_context import current_request_id

LogFormat = Literal["json", "text"]

HANDLER_NAME = "fusionserve"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# uvicorn passes a colourised copy of some messages as an extra; it is not worth a field.
_NOT_EXTRAS = [*RESERVED_ATTRS, "color_message"]


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records emitted while a request is handled (unless given)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = current_request_id()
            if request_id is not None:
                record.request_id = request_id
        return True


def build_formatter(log_format: LogFormat) -> logging.Formatter:
    """JSON: timestamp, level, logger, message, request_id when known, and any ``extra``."""
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT, defaults={"request_id": "-"})
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        reserved_attrs=_NOT_EXTRAS,
    )


def setup_logging(
    level: str, log_format: LogFormat, *, access_log: bool, stream: TextIO | None = None
) -> logging.Handler:
    """Log at ``level`` to ``stream`` (stderr by default); calling it again replaces the handler
    it added before and leaves other handlers of the root logger alone."""
    handler = logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(build_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # uvicorn logs requests only if this logger has a handler (its own or the root's).
    logging.getLogger("uvicorn.access").propagate = access_log
    return handler
