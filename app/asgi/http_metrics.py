"""Count and time every HTTP request, labelled by its route template (bounded cardinality)."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OTHER_ROUTE = "other"


class RequestObserver(Protocol):
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None: ...


class HttpMetricsMiddleware:
    """Reports route, method, status and duration of each request to ``observer``.

    The route is the template of the route that handled the request. Requests answered before
    routing (by the gate) are labelled with their path when it is one of ``paths``; anything
    else (404s) is "other", so that clients cannot grow the label set.
    """

    def __init__(self, app: ASGIApp, *, observer: RequestObserver, paths: Collection[str]) -> None:
        self.app = app
        self.observer = observer
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what Starlette answers if the app raises before responding

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            self.observer.observe_request(self._route(scope), scope["method"], status, seconds)

    def _route(self, scope: Scope) -> str:
        template = getattr(scope.get("route"), "path", None)
        if isinstance(template, str):
            return template
        path = scope["path"]
        return path if path in self.paths else OTHER_ROUTE
