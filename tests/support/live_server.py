"""A real uvicorn server for an app, in a background thread on a free loopback port: for
clients that need a socket (tritonclient's geventhttpclient cannot use an ASGI transport);
and a bundle served over HTTP and gRPC at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from app.core.engine import build_engine
from app.main import create_app
from tests.support.app_setup import make_settings
from tests.support.ports import bound_socket
from tests.support.server_process import free_port


@contextmanager
def serving(app: FastAPI, timeout_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields ``host:port`` once /readyz answers 200."""
    sock = bound_socket()
    address = f"127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(app, log_config=None, lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_ready(address, thread, timeout_s)
        yield address
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()


@contextmanager
def serving_with_grpc(
    bundle: Path, *, engine_factory: object = build_engine, **overrides: object
) -> Iterator[tuple[str, str]]:
    """``bundle`` served with the test settings and ``overrides``, over HTTP and gRPC; yields
    both ``host:port`` addresses (HTTP first) once ready."""
    port = free_port()
    settings = make_settings(bundle, grpc_port=port, **overrides)
    app = create_app(settings, engine_factory=engine_factory)  # type: ignore[arg-type]
    with serving(app) as address:
        yield address, f"127.0.0.1:{port}"


def _wait_ready(address: str, thread: threading.Thread, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert thread.is_alive(), "the server thread ended"
        try:
            if httpx.get(f"http://{address}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"server at {address} not ready in {timeout_s} s")
