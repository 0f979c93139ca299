"""ONNX Runtime sessions run through IO binding: inputs copied to the session's device once,
outputs either copied back to the host or kept on the device for the next model.

With plain ``InferenceSession.run`` every output comes back to the host, so the image
encoder's features would go GPU -> host -> GPU on their way to the fusion head. A
``BoundSession`` keeps them where they are (``run_kept``) and binds them straight into the head
(``Pipeline`` decides when the graph allows it). On the CPU provider the device is the host:
the same code path runs, which is how it is tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import onnxruntime as ort

from app.core.runtime import CUDA, active_providers

DeviceType = Literal["cuda", "cpu"]
Feed = Mapping[str, "np.ndarray | ort.OrtValue"]


class BoundSession:
    """One session, its inputs and outputs bound to ``device`` (``cuda`` or ``cpu``)."""

    def __init__(self, session: ort.InferenceSession, device: DeviceType, device_id: int = 0):
        self.session = session
        self.device: DeviceType = device
        self.device_id = device_id

    @classmethod
    def on_active_device(cls, session: ort.InferenceSession, device_id: int) -> BoundSession:
        """Bound to the GPU when the session really runs on CUDA, else to the host."""
        on_cuda = CUDA in active_providers(session)
        return cls(session, "cuda" if on_cuda else "cpu", device_id)

    def run(self, output_names: list[str] | None, input_feed: Feed) -> list[np.ndarray]:
        """As ``InferenceSession.run``: the outputs copied to the host."""
        binding = self._bind(output_names, input_feed)
        self.session.run_with_iobinding(binding)
        outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return outputs

    def run_kept(self, output_name: str, input_feed: Feed) -> ort.OrtValue:
        """Run and keep ``output_name`` on the device, for another bound session's input."""
        binding = self._bind([output_name], input_feed)
        self.session.run_with_iobinding(binding)
        (kept,) = binding.get_outputs()
        return kept

    def _bind(self, output_names: list[str] | None, input_feed: Feed) -> ort.IOBinding:
        binding = self.session.io_binding()
        for name, value in input_feed.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:  # copied to the device once, when the session runs
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        names = output_names or [output.name for output in self.session.get_outputs()]
        for name in names:
            binding.bind_output(name, self.device, self.device_id)
        return binding
