"""Free loopback ports for test servers, none handed out twice in one test run.

A port from ``free_port`` is free when chosen but not reserved: its socket is closed, so the
next bind to port 0 may be given the same number (a CI run bound a gRPC server and an HTTP
server to one port that way). Every port chosen here is remembered and never chosen again."""

from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()


def bound_socket() -> socket.socket:
    """A TCP socket bound to a loopback port not handed out before (the caller listens)."""
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return sock
        sock.close()


def free_port() -> int:
    """A loopback port free now and not handed out before, for a server to bind."""
    with bound_socket() as sock:
        port: int = sock.getsockname()[1]
        return port
