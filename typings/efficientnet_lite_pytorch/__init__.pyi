# Local stub: only what models/ uses (see typings/README.md).
from typing import Any, Self

from torch import Tensor, nn

class EfficientNet(nn.Module):
    _avg_pooling: nn.AdaptiveAvgPool2d
    _fc: nn.Linear
    @classmethod
    def from_pretrained(
        cls,
        model_name: str,
        weights_path: str | None = None,
        advprop: bool = False,
        in_channels: int = 3,
        num_classes: int = 1000,
        **override_params: Any,
    ) -> Self: ...
    def extract_features(self, inputs: Tensor) -> Tensor: ...
    def forward(self, inputs: Tensor) -> Tensor: ...
