# mypy: ignore-errors
# This module runs in its framework's own venv (bench/.venvs/litserve); the main venv, where
# mypy runs, does not have the framework, so mypy skips it. Each peer is checked by running
# it instead: bench.peers.peer_benchmark compares its answers with the in-process pipeline's.
"""(d) LitServe 0.2.19 peer: LitServe's own batching (max 16 items, 5 ms batch timeout).

LitServe parses the multipart form in its API-server process and hands the Starlette
FormData to the inference worker, whose loop calls ``decode_request`` per item (decode +
tokenise here, as LitServe intends), then ``batch``/``predict``/``unbatch`` on the gathered
batch and ``encode_response`` per item.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation at run
# time, and only the real `Request` class makes it hand over the parsed form.
import argparse
from typing import Any

import litserve as ls
import numpy as np
from starlette.requests import Request

from app.core.encoder_pipeline import PreparedItem
from bench.peers.common import CLASSIFY_PATH, load_engine, response_body


class FusionLitAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.engine = load_engine()

    def decode_request(self, request: Request) -> PreparedItem:
        # The parameter must be called `request`; for multipart bodies LitServe passes the
        # Starlette FormData (parsed in the API process, pickled to this worker).
        form: Any = request
        upload = form["image"]
        data = upload.file.read() if hasattr(upload, "file") else bytes(upload)
        return self.engine.prepare(data, str(form["text"]))

    def batch(self, inputs: list[PreparedItem]) -> list[PreparedItem]:
        return inputs  # Pipeline.run stacks and pads the items itself

    def predict(self, x: list[PreparedItem]) -> np.ndarray:
        return self.engine.pipeline.run(x)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return response_body(self.engine, output)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    api = FusionLitAPI(max_batch_size=16, batch_timeout=0.005, api_path=CLASSIFY_PATH)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        generate_client_file=False,
        num_api_servers=1,
    )


if __name__ == "__main__":
    main()
