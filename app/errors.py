"""Domain exceptions. HTTP-facing ones carry their status code and a stable error code."""

from __future__ import annotations

import re


class FusionServeError(Exception):
    """Base of every error FusionServe raises on purpose."""


class StartupError(FusionServeError):
    """The service cannot start: bad settings, bad bundle, missing execution provider."""


class BundleError(StartupError):
    """A bundle failed validation. ``field`` names the manifest field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"bundle field '{field}': {message}")
        self.field = field


class RequestError(FusionServeError):
    """An error answered to a client: JSON envelope with ``code`` and ``message``."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(RequestError):
    status_code = 422
    code = "invalid_request"


class ModalityRequired(RequestError):
    """A modality is missing and the bundle's fusion head cannot do without it."""

    status_code = 422
    code = "modality_required"


class ExplainUnsupported(RequestError):
    """``explain`` was asked where it cannot be computed: a request without both modalities,
    or a bundle whose head cannot leave one out."""

    status_code = 422
    code = "explain_unsupported"


class MalformedForm(RequestError):
    """The multipart body cannot be parsed (no boundary, broken part headers...)."""

    status_code = 400
    code = "invalid_multipart"


class UnsupportedMediaType(RequestError):
    """The request body is not of the media type the endpoint takes."""

    status_code = 415
    code = "unsupported_media_type"


class InvalidTensor(RequestError):
    """An Open Inference Protocol request whose tensors are malformed: unknown or missing
    inputs, wrong datatype or shape, broken binary framing, undecodable elements."""

    status_code = 400
    code = "invalid_tensor"


class ModelNotFound(RequestError):
    """The request names a model (or a model version) that this server does not serve."""

    status_code = 404
    code = "model_not_found"


class InvalidImage(RequestError):
    status_code = 422
    code = "invalid_image"


class UnsupportedImageFormat(RequestError):
    status_code = 415
    code = "unsupported_image_format"


class ImageTooLarge(RequestError):
    status_code = 413
    code = "image_too_large"


class InvalidText(RequestError):
    status_code = 422
    code = "invalid_text"


class PayloadTooLarge(RequestError):
    status_code = 413
    code = "payload_too_large"


class FieldTooLarge(RequestError):
    """A text field of the form is over its size limit; refused while the form is parsed."""

    status_code = 413
    code = "field_too_large"


class NotReady(RequestError):
    status_code = 503
    code = "not_ready"


class InferenceFailed(RequestError):
    status_code = 500
    code = "inference_failed"


class Overloaded(RequestError):
    """The work already accepted would not drain in time (``app.core.admission``): retry later
    (``Retry-After`` says when). Its status is 503 or, as configured (``overload_status``),
    429."""

    status_code = 503
    code = "overloaded"

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, status_code: int = 503
    ) -> None:
        super().__init__(message, headers=headers)
        self.status_code = status_code


class MemoryBusy(Overloaded):
    """The memory budget for image decodes or request bodies is in use (``Retry-After``)."""

    code = "memory_busy"


class ShuttingDown(RequestError):
    """The service is stopping. ``Connection: close`` sends the client's next request on a
    new connection, which a load balancer routes to another replica."""

    status_code = 503
    code = "shutting_down"

    def __init__(self, message: str = "the service is shutting down") -> None:
        super().__init__(message, headers={"Connection": "close"})


class Unauthorized(RequestError):
    """No valid API key. One message whatever was wrong, so a caller learns nothing."""

    status_code = 401
    code = "unauthorized"

    def __init__(self) -> None:
        super().__init__("missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


class DeadlineExceeded(RequestError):
    status_code = 504
    code = "deadline_exceeded"


class ClientDisconnected(RequestError):
    """The client left before its answer was ready (nginx's 499); nobody reads this reply."""

    status_code = 499
    code = "client_closed_request"


class TooManyItems(RequestError):
    status_code = 413
    code = "too_many_items"


class ReloadDisabled(RequestError):
    status_code = 403
    code = "reload_disabled"

    def __init__(self) -> None:
        super().__init__("reloading is switched off (FUSIONSERVE_RELOAD_ENABLED=false)")


class ReloadInProgress(RequestError):
    """A reload of the same bundle is running; the new one would race it."""

    status_code = 409
    code = "reload_in_progress"


class ReloadFailed(RequestError):
    """The bundle could not be loaded again; the loaded version keeps serving."""

    status_code = 500
    code = "reload_failed"


class RepositoryDisabled(RequestError):
    """Loading and unloading bundles by name is off (no model repository configured, or
    several worker processes, whose bundles are fixed)."""

    status_code = 403
    code = "repository_disabled"


class InvalidModelName(RequestError):
    """A model name that is not a plain name (it could reach outside the repository)."""

    status_code = 400
    code = "invalid_model_name"


class LoadFailed(RequestError):
    """A bundle of the repository could not be loaded; nothing changed."""

    status_code = 500
    code = "load_failed"


# Names that may be quoted back in a message; others are user input of any shape.
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def quoted_name(name: str) -> str:
    """``name`` quoted for an error message, if it is a plain short name."""
    return f"'{name}'" if _PRINTABLE_NAME.fullmatch(name) else "(name not shown)"


def forget_tracebacks(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and of the errors it was raised from or during, once
    nothing needs them: it was answered (and logged), or it became an item's outcome.

    A traceback holds the frames it passed through, and they the request's locals (its body,
    its image). An error that one of those frames holds, such as the thread pool's future
    of a decode that failed, or a one-item request's outcome raised again, makes a reference
    cycle, which only the cyclic garbage collector frees: the request's memory would outlive
    its answer until a collection (tests/app/asgi/test_reference_cycles.py)."""
    seen: set[int] = set()
    pending: BaseException | None = exc
    while pending is not None and id(pending) not in seen:
        seen.add(id(pending))
        pending.__traceback__ = None
        pending = pending.__cause__ or pending.__context__
