"""Pooling of a text model's token states into one vector per text, as torch modules that
trace into ONNX (``torch.onnx.export(dynamo=False)``, dynamic batch and sequence axes).

Every pooling takes the last hidden states ``[n, sequence, hidden]``, the attention mask
``[n, sequence]`` (1 for real tokens) and the input ids ``[n, sequence]``, and returns
``[n, hidden]`` (``[n, k * hidden]`` for a concatenation of ``k`` modes). The
sentence-transformers modes reproduce ``sentence_transformers...modules.Pooling`` on right- and
left-padded batches; ``eot`` is CLIP's text pooling and ``last_position`` SigLIP's. Indices are
computed on int32 tensors before ``ArgMax``: ONNX Runtime's ArgMax has no int64 kernel
(onnxruntime#10068).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# sentence-transformers' modes, in the order its legacy ``pooling_mode_*`` flags concatenate.
ST_POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# The value the ``max`` mode gives padding before taking the maximum (sentence-transformers < 5).
MAX_POOLING_PAD = -1e9
# The floor of a mean's denominator: an all-padding row pools to zeros, not NaN.
MEAN_DENOMINATOR_FLOOR = 1e-9
# CLIP checkpoints converted before transformers PR #24773 carry this eos_token_id; they pool
# at the largest input id (the end-of-text token has the largest id in CLIP's vocabulary).
LEGACY_CLIP_EOS_TOKEN_ID = 2


def _gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``hidden[row, positions[row]]`` for every row: [n, s, d], [n] -> [n, d]."""
    index = positions.to(torch.int64).reshape(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
    return torch.gather(hidden, 1, index).squeeze(1)


def _float_mask(attention_mask: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The mask as [n, s, 1] in the hidden states' dtype."""
    return attention_mask.unsqueeze(-1).to(hidden.dtype)


class TextPooling(nn.Module):
    """Base of the poolings: ``(hidden [n, s, d], attention_mask [n, s], input_ids [n, s])``
    to ``[n, d]``."""

    # What the pooling is called in the manifest's model card and in error messages.
    mode: str = ""

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class ClsPooling(TextPooling):
    """The state of the first real token (``[CLS]``; index 0 when padded on the right)."""

    mode = "cls"

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        first = attention_mask.to(torch.int32).argmax(dim=1)
        return _gather_positions(hidden, first)


class LastTokenPooling(TextPooling):
    """The state of the last real token (zeros for a row without one)."""

    mode = "lasttoken"

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        mask = attention_mask.to(torch.int32)
        # Positions count from 1 so that the largest masked position is the last real token.
        positions = torch.cumsum(torch.ones_like(mask), dim=1)
        last = (mask * positions).argmax(dim=1)
        return _gather_positions(hidden * _float_mask(attention_mask, hidden), last)


class MaxPooling(TextPooling):
    """The element-wise maximum over the real tokens (padding set to -1e9 first)."""

    mode = "max"

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        padding = attention_mask.unsqueeze(-1) == 0
        return hidden.masked_fill(padding, MAX_POOLING_PAD).max(dim=1).values


class MeanPooling(TextPooling):
    """The mean over the real tokens (sum / clamp(count, 1e-9)); with ``sqrt_length``, the sum
    divided by the square root of that count instead (``mean_sqrt_len_tokens``)."""

    def __init__(self, *, sqrt_length: bool = False) -> None:
        super().__init__()
        self.sqrt_length = sqrt_length
        self.mode = "mean_sqrt_len_tokens" if sqrt_length else "mean"

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        mask = _float_mask(attention_mask, hidden)
        summed = (hidden * mask).sum(dim=1)
        count = mask.sum(dim=1).clamp(min=MEAN_DENOMINATOR_FLOOR)
        return summed / (torch.sqrt(count) if self.sqrt_length else count)


class WeightedMeanPooling(TextPooling):
    """The mean over the real tokens weighted by position: 1, 2, ... from the first real token
    (sentence-transformers >= 6.3; earlier releases counted from the first position, which
    differs for left-padded batches only: the service pads on the right)."""

    mode = "weightedmean"

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        mask = _float_mask(attention_mask, hidden)
        # The first real token's position (left padding); int32: ORT's ArgMax has no int64.
        first = torch.argmax(attention_mask.to(torch.int32), dim=1).to(hidden.dtype)
        positions = torch.cumsum(torch.ones_like(mask), dim=1) - first.reshape(-1, 1, 1)
        weights = positions * mask
        summed = (hidden * weights).sum(dim=1)
        return summed / weights.sum(dim=1).clamp(min=MEAN_DENOMINATOR_FLOOR)


class EotPooling(TextPooling):
    """CLIP's pooling: the state at the end-of-text token.

    With the legacy ``eos_token_id`` (2) that is the position of the largest input id (the
    first one, should padding repeat it); otherwise the first position holding
    ``eos_token_id``. Padding that comes after the end-of-text token never moves it.
    """

    mode = "eot"

    def __init__(self, eos_token_id: int) -> None:
        super().__init__()
        self.eos_token_id = eos_token_id

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        ids = input_ids.to(torch.int32)
        if self.eos_token_id == LEGACY_CLIP_EOS_TOKEN_ID:
            position = ids.argmax(dim=-1)
        else:
            position = (ids == self.eos_token_id).to(torch.int32).argmax(dim=-1)
        return _gather_positions(hidden, position)


class LastPositionPooling(TextPooling):
    """SigLIP's pooling: the state at the last position, which may be padding (the text is
    padded to a fixed length, so the position is always the same)."""

    mode = "last_position"

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        return hidden[:, -1, :]


class ConcatPooling(TextPooling):
    """Several poolings side by side, concatenated in order (sentence-transformers' combined
    modes)."""

    def __init__(self, poolings: Sequence[TextPooling]) -> None:
        super().__init__()
        self.poolings = nn.ModuleList(poolings)
        self.mode = "+".join(pooling.mode for pooling in poolings)

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        return torch.cat([p(hidden, attention_mask, input_ids) for p in self.poolings], dim=-1)


def st_pooling(mode: str) -> TextPooling:
    """The pooling for one sentence-transformers mode name (see ``ST_POOLING_MODES``)."""
    poolings: dict[str, type[TextPooling]] = {
        "cls": ClsPooling,
        "max": MaxPooling,
        "weightedmean": WeightedMeanPooling,
        "lasttoken": LastTokenPooling,
    }
    if mode == "mean":
        return MeanPooling()
    if mode == "mean_sqrt_len_tokens":
        return MeanPooling(sqrt_length=True)
    if mode not in poolings:
        raise ValueError(f"unknown pooling mode {mode!r}; expected one of {ST_POOLING_MODES}")
    return poolings[mode]()


def st_poolings(modes: Sequence[str]) -> TextPooling:
    """One mode's pooling, or the concatenation of several modes' (in the order given)."""
    if not modes:
        raise ValueError("no pooling mode given")
    if len(modes) == 1:
        return st_pooling(modes[0])
    return ConcatPooling([st_pooling(mode) for mode in modes])
