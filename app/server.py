"""uvicorn's server, with a graceful stop that readiness probes and load balancers can see.

On SIGTERM or SIGINT uvicorn closes its port, closes idle keep-alive connections, lets
requests in progress finish (for up to ``timeout_graceful_shutdown``), then runs the
lifespan shutdown. This adds, at the signal itself, a switch of the service to "stopping"
(/readyz 503, new requests a 503 ``shutting_down``), an optional delay before the port closes
(``shutdown_delay_s``: a load balancer still sending here meanwhile gets clean 503s rather
than refused connections), and a normal exit (status 0) once drained: uvicorn would re-raise
the signal and die of it.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from app.config.settings import Settings
from app.core.lifecycle import Status
from app.workers.pod_status import PodStatus

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        *,
        stop_accepting: Callable[[], None],
        drain_delay_s: float = 0.0,
    ) -> None:
        super().__init__(config)
        self._stop_accepting = stop_accepting
        self._drain_delay_s = drain_delay_s
        self._signal: signal.Signals | None = None
        self._signalled_at = 0.0
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not super().handle_exit: it records the signal so that uvicorn re-raises it after
        # shutting down. Otherwise the same: a second Ctrl+C stops waiting for connections.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
            return
        if self._signal is None:
            self._signal = signal.Signals(sig)
            self._signalled_at = time.monotonic()
            self._stop_accepting()  # before anything else: readiness is 503 from here on
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if not should_exit or self._signal is None:
            return should_exit
        if not self._announced:
            self._announced = True
            logger.info(
                "%s: readiness is 503 and new requests are refused; the port closes in %.1f s, "
                "then accepted requests have %s s to be answered",
                self._signal.name,
                self._drain_delay_s,
                self.config.timeout_graceful_shutdown,
            )
        elapsed = time.monotonic() - self._signalled_at
        return self.force_exit or elapsed >= self._drain_delay_s


def run_server(
    settings: Settings,
    *,
    sockets: Sequence[socket.socket] | None = None,
    pod: PodStatus | None = None,
) -> int:
    """Serve ``settings`` until stopped: on ``sockets`` when given (a worker process of
    several: the supervisor bound the port), else on its host and port; 1 if loading failed,
    else 0. Logging must be set up already."""
    from app.main import create_app  # the app and its imports: only when serving

    # Pillow warns about damaged files it still decodes (e.g. corrupt EXIF); those files are
    # answered or refused per request, and the warnings registry would otherwise keep every
    # distinct message a hostile client makes it print.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    tune_collector(settings.gc_young_threshold)
    server: DrainingServer | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_startup_failure=stop, pod=pod)
    lifecycle = app.state.core.lifecycle
    server = DrainingServer(
        uvicorn_config(app, settings),
        stop_accepting=lifecycle.stop_accepting,
        drain_delay_s=settings.shutdown_delay_s,
    )
    server.run(sockets=None if sockets is None else list(sockets))
    # A stop by SIGTERM/SIGINT after draining is a normal exit.
    return 1 if lifecycle.status is Status.FAILED else 0


def tune_collector(young_threshold: int) -> None:
    """Let ``young_threshold`` objects be allocated (net of those freed) between automatic
    collections of the youngest generation (0: no automatic collections); the older
    generations' thresholds stay Python's. Measured on the overhead suite's load (tiny
    bundle, 64 clients; ``python_gc_collections_total`` counts them): at Python's 700, ~180
    young, ~16 middle and ~1.5 full collections a second, ~46 us of CPU per request in all,
    the full ones most of it; at 2000, about one collection a second."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: no access log unless asked for (the service logs
    what matters itself), proxy headers read only from the proxies ``forwarded_allow_ips``
    trusts, and no ``server`` header (work per response, and a fingerprint)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # setup_logging configured uvicorn's loggers too
        log_level=settings.log_level,
        access_log=settings.access_log,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
