"""The classification routes on a lean path: past the service's own middleware, straight to
the endpoint, without FastAPI's per-request machinery.

A ``DirectRoute`` is declared like any FastAPI route (path, response model, documented
errors, request body), so the OpenAPI description is FastAPI's, generated from the same
models; but its endpoint takes the request (and the path's parameters) and returns the
finished ``Response``: no dependency solving, no validation of the answer against its
model (the endpoint encodes it once, from that model), no task group. Its errors are
answered by the app's own handlers (``app.asgi.error_responses.error_answer``), as
everywhere else.

``ServiceApp`` sends a request for a direct route through the service's middleware (the
same list, in the same order, as every other request: request id, metrics, tracing, API keys,
the request gates, the /v2 error bodies) to the route, skipping what FastAPI and Starlette
wrap around every route (error middleware, exception middleware, body limit, telemetry,
exit stacks) and the router's search. Any other request takes the full stack.

Measured by ``bench/overhead/cpu_split.py`` and ``bench.overhead.request_overhead``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app.asgi.error_responses import error_answer

DirectEndpoint = Callable[..., Awaitable[Response]]


class DirectRoute(APIRoute):
    """A FastAPI route whose endpoint is called directly: ``endpoint(request, **path_params)``
    returns the response."""

    def __init__(self, path: str, endpoint: DirectEndpoint, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = self._answer

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self.endpoint(request, **scope.get("path_params", {}))
        except Exception as exc:  # answered by the app's handlers, as on any route
            response = await error_answer(request, exc)
        await response(scope, receive, send)


def direct_post(
    router: APIRouter, path: str, **kwargs: Any
) -> Callable[[DirectEndpoint], DirectEndpoint]:
    """Declare ``POST path`` on ``router`` as a direct route (``kwargs``: as FastAPI's
    ``router.post``, for its documentation)."""

    def declare(endpoint: DirectEndpoint) -> DirectEndpoint:
        router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=DirectRoute, **kwargs
        )
        return endpoint

    return declare


def direct_routes(routers: Sequence[APIRouter]) -> list[DirectRoute]:
    return [r for router in routers for r in router.routes if isinstance(r, DirectRoute)]


class DirectPaths:
    """Sends requests that a direct route matches to ``direct`` (the service's middleware
    around that route), everything else to ``full``."""

    def __init__(self, full: ASGIApp, direct: ASGIApp, routes: Sequence[DirectRoute]) -> None:
        self.full = full
        self.direct = direct
        self.exact = {r.path: r for r in routes if not r.param_convertors}
        self.templated = [r for r in routes if r.param_convertors]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._match(scope) is not None:
            await self.direct(scope, receive, send)
            return
        await self.full(scope, receive, send)

    def _match(self, scope: Scope) -> DirectRoute | None:
        """The route for this request, its path parameters put in the scope; None if no
        direct route matches (or not this method: the full stack answers 405)."""
        route = self.exact.get(scope["path"])
        candidates = (route,) if route is not None else self.templated
        for candidate in candidates:
            assert candidate is not None
            match, child = candidate.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                scope["route"] = candidate
                return candidate
        return None


async def _call_route(scope: Scope, receive: Receive, send: Send) -> None:
    route: DirectRoute = scope["route"]
    await route.app(scope, receive, send)


class ServiceApp(FastAPI):
    """The service's FastAPI app: the direct routes of the routers it includes take the
    lean path (they are documented, and routed as any route if reached otherwise)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct_routes: list[DirectRoute] = []

    def include_router(self, router: APIRouter, **kwargs: Any) -> None:
        if kwargs.get("prefix"):
            raise ValueError("the lean path takes routers without a prefix")
        super().include_router(router, **kwargs)
        self.direct_routes += direct_routes([router])

    def build_middleware_stack(self) -> ASGIApp:
        full = super().build_middleware_stack()
        if not self.direct_routes:
            return full
        direct: ASGIApp = _call_route
        for cls, args, kwargs in reversed(self.user_middleware):
            direct = cls(direct, *args, **kwargs)
        return DirectPaths(full, direct, self.direct_routes)
