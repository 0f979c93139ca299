# mypy: ignore-errors
# This module runs in its framework's own venv (bench/.venvs/ray); the main venv, where
# mypy runs, does not have the framework, so mypy skips it. Each peer is checked by running
# it instead: bench.peers.peer_benchmark compares its answers with the in-process pipeline's.
"""(f) Ray Serve 2.60 peer: ``@serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)``.

One replica (one process with the ONNX sessions) behind Ray Serve's HTTP proxy. The replica's
``__call__`` parses the multipart form (Starlette) and decodes + tokenises in a thread, so the
replica's event loop keeps accepting requests; the batched method runs ``Pipeline.run`` in a
thread for the same reason. ``max_ongoing_requests`` is raised from Ray's default of 5 to
FusionServe's queue capacity (128); at 5 no batch could ever exceed 5 items.

Ray itself runs with usage stats and the dashboard off and with 2 CPUs (the machine's cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402  (after the environment it reads at import)
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

from app.core.encoder_pipeline import PreparedItem  # noqa: E402
from bench.peers.common import CLASSIFY_PATH, load_engine, response_body  # noqa: E402

MAX_ONGOING_REQUESTS = 128


@serve.deployment(num_replicas=1, max_ongoing_requests=MAX_ONGOING_REQUESTS)
class Classifier:
    def __init__(self) -> None:
        self.engine = load_engine()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def run_batch(self, items: list[PreparedItem]) -> list[Any]:
        probabilities = await asyncio.to_thread(self.engine.pipeline.run, items)
        return list(probabilities)

    async def __call__(self, request: Request) -> dict[str, Any]:
        form = await request.form()
        upload: Any = form["image"]
        data = await upload.read()
        item = await asyncio.to_thread(self.engine.prepare, data, str(form["text"]))
        probabilities = await self.run_batch(item)
        return response_body(self.engine, probabilities)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ray.init(
        num_cpus=os.cpu_count(),
        _node_ip_address="127.0.0.1",  # keep Ray's own services on loopback too
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
        runtime_env={
            "env_vars": {
                k: v for k, v in os.environ.items() if k.startswith(("FUSIONSERVE_", "PYTHONPATH"))
            }
        },
    )
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(Classifier.bind(), route_prefix=CLASSIFY_PATH)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    # Shut Serve and the local Ray cluster (GCS, raylet, workers) down with the driver.
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
