"""A real uvicorn server for an app, in a background thread on a free loopback port: for
clients that need a socket (tritonclient's geventhttpclient cannot use an ASGI transport)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from tests.support.ports import bound_socket


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
