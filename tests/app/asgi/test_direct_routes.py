"""Direct routes: the service's middleware around the endpoint, and nothing of FastAPI's own
per request (its router and exception middleware never see them), while their errors get the
app's handlers, their path parameters reach the endpoint and FastAPI still documents them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.asgi.direct_routes import ServiceApp, direct_post
from app.asgi.error_responses import install_error_handlers
from app.errors import InvalidText
from app.rest.rest_schemas import LiveResponse


class Recorder:
    """A service middleware: notes each request's path and matched route template."""

    seen: list[tuple[str, str | None]] = []

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        route = scope.get("route")
        Recorder.seen.append((scope["path"], getattr(route, "path", None)))


# Set in the scope by Starlette's exception middleware, which wraps FastAPI's router.
EXCEPTION_MIDDLEWARE_KEY = "starlette.exception_handlers"


def _app() -> tuple[ServiceApp, list[tuple[str, bool]]]:
    """An app with one direct and one plain route; each notes its name and whether the
    request went through FastAPI's own stack (its exception middleware)."""
    router = APIRouter()
    handled: list[tuple[str, bool]] = []

    @direct_post(router, "/items/{name}", response_model=LiveResponse, summary="Direct")
    async def direct(request: Request, name: str) -> Response:
        handled.append((name, EXCEPTION_MIDDLEWARE_KEY in request.scope))
        if name == "bad":
            raise InvalidText("that text will not do")
        if name == "boom":
            raise RuntimeError("a bug")
        return JSONResponse({"status": name})

    @router.get("/plain")
    async def plain(request: Request) -> dict[str, Any]:
        handled.append(("plain", EXCEPTION_MIDDLEWARE_KEY in request.scope))
        return {"status": "plain"}

    app = ServiceApp()
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(Recorder)
    return app, handled


def test_a_direct_route_gets_the_service_middleware_and_skips_fastapis_stack() -> None:
    app, handled = _app()
    Recorder.seen = []
    with TestClient(app) as client:
        answer = client.post("/items/a")
        plain = client.get("/plain")
    assert answer.json() == {"status": "a"}
    assert plain.json() == {"status": "plain"}
    assert handled == [("a", False), ("plain", True)]
    assert Recorder.seen == [("/items/a", "/items/{name}"), ("/plain", "/plain")]


def test_errors_get_the_apps_handlers_and_other_methods_the_full_stack() -> None:
    app, _ = _app()
    with TestClient(app, raise_server_exceptions=False) as client:
        refused = client.post("/items/bad")
        failed = client.post("/items/boom")
        wrong_method = client.get("/items/a")
    assert refused.status_code == 422
    assert refused.json()["error"] == {
        "code": "invalid_text",
        "message": "that text will not do",
        "request_id": None,
    }
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert wrong_method.status_code == 405


def test_fastapi_documents_a_direct_route() -> None:
    app, _ = _app()
    operation = app.openapi()["paths"]["/items/{name}"]["post"]
    assert operation["summary"] == "Direct"
    assert [p["name"] for p in operation["parameters"]] == ["name"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/LiveResponse"}
