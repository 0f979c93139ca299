"""The server span of each classification request over HTTP (``app.observability.tracing``):
continues an
incoming ``traceparent`` and is the current span while the request is handled, so the
serving core's spans nest under it."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.tracing import incoming_context


class TraceRequests:
    """Traces the requests whose path ``traced`` accepts; ``route`` names their span."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: Tracer,
        traced: Callable[[str], bool],
        route: Callable[[str], str],
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.traced = traced
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.traced(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        method, route = scope["method"], self.route(scope["path"])
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=incoming_context(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        ) as span:

            async def sent(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, sent)
