"""The text poolings: each sentence-transformers mode (alone and combined) equals
sentence-transformers' own Pooling on right- and left-padded batches, CLIP's end-of-text and
SigLIP's last-position pooling pick the positions transformers picks, and every pooling traces
into ONNX with dynamic batch and sequence axes and runs in ONNX Runtime as in torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sentence_transformers.sentence_transformer.modules import Pooling
from torch import nn

from models.encoders.text_pooling import (
    ST_POOLING_MODES,
    EotPooling,
    LastPositionPooling,
    TextPooling,
    st_pooling,
    st_poolings,
)
from models.export.export_support import OPSET, legacy_exporter_warnings_silenced

HIDDEN = 6


def _batch(
    lengths: list[int], sequence: int, *, left: bool = False, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random states, a mask with ``lengths`` real tokens per row (padded on the right, or on
    the left), and ids (1..50 for real tokens, 0 for padding)."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(len(lengths), sequence, HIDDEN, generator=generator)
    mask = torch.zeros(len(lengths), sequence, dtype=torch.int64)
    for row, length in enumerate(lengths):
        if left:
            mask[row, sequence - length :] = 1
        else:
            mask[row, :length] = 1
    ids = torch.randint(1, 50, (len(lengths), sequence), generator=generator) * mask
    return hidden, mask, ids


def _st(modes: str | tuple[str, ...], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    pooling = Pooling(HIDDEN, pooling_mode=modes)
    features = {"token_embeddings": hidden, "attention_mask": mask}
    result: torch.Tensor = pooling(features)["sentence_embedding"]
    return result


@pytest.mark.parametrize("mode", ST_POOLING_MODES)
@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_each_mode_equals_sentence_transformers(mode: str, left: bool) -> None:
    hidden, mask, ids = _batch([5, 1, 3, 5, 2], 5, left=left)
    ours = st_pooling(mode)(hidden, mask, ids)
    assert ours.shape == (5, HIDDEN)
    torch.testing.assert_close(ours, _st(mode, hidden, mask), rtol=0, atol=1e-6)


def test_combined_modes_concatenate_in_order() -> None:
    hidden, mask, ids = _batch([4, 2, 1], 4)
    modes = ("max", "cls", "weightedmean")
    ours = st_poolings(modes)(hidden, mask, ids)
    assert ours.shape == (3, 3 * HIDDEN)
    torch.testing.assert_close(ours, _st(modes, hidden, mask), rtol=0, atol=1e-6)
    assert st_poolings(modes).mode == "max+cls+weightedmean"


def test_max_ignores_padding_even_when_it_dominates() -> None:
    hidden, mask, ids = _batch([2, 3], 4)
    hidden[:, 3:, :] = 1e6  # padding states larger than any real one
    pooled = st_pooling("max")(hidden, mask, ids)
    assert float(pooled.max()) < 1e6


def test_all_padding_rows_pool_to_zeros_not_nan() -> None:
    hidden, mask, ids = _batch([3, 0], 3)
    for mode in ("mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"):
        pooled = st_pooling(mode)(hidden, mask, ids)
        assert torch.equal(pooled[1], torch.zeros(HIDDEN)), mode


def test_unknown_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown pooling mode 'median'"):
        st_pooling("median")
    with pytest.raises(ValueError, match="no pooling mode"):
        st_poolings(())


def test_legacy_eot_pools_at_the_first_largest_id() -> None:
    hidden = torch.randn(3, 6, HIDDEN)
    eot = 99
    ids = torch.tensor(
        [
            [98, 5, 7, eot, eot, eot],  # padded with the end-of-text id itself
            [98, 4, eot, 0, 0, 0],  # padded with 0
            [98, 1, 2, 3, 4, eot],  # full
        ]
    )
    pooled = EotPooling(2)(hidden, torch.ones_like(ids), ids)
    expected = torch.stack([hidden[0, 3], hidden[1, 2], hidden[2, 5]])
    assert torch.equal(pooled, expected)


def test_eot_pools_at_the_first_eos_id_whatever_the_largest_id() -> None:
    hidden = torch.randn(2, 5, HIDDEN)
    eos = 3
    ids = torch.tensor([[1, 80, 90, eos, eos], [1, 99, eos, 0, 0]])
    pooled = EotPooling(eos)(hidden, torch.ones_like(ids), ids)
    assert torch.equal(pooled, torch.stack([hidden[0, 3], hidden[1, 2]]))


def test_last_position_pools_the_last_position_padding_or_not() -> None:
    hidden, mask, ids = _batch([2, 4], 4)
    pooled = LastPositionPooling()(hidden, mask, ids)
    assert torch.equal(pooled, hidden[:, -1, :])


class _Wrapped(nn.Module):
    def __init__(self, pooling: TextPooling) -> None:
        super().__init__()
        self.pooling = pooling

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        result: torch.Tensor = self.pooling(hidden, attention_mask, input_ids)
        return result


POOLINGS: dict[str, TextPooling] = {
    **{mode: st_pooling(mode) for mode in ST_POOLING_MODES},
    "cls+mean+max": st_poolings(("cls", "mean", "max")),
    "eot-legacy": EotPooling(2),
    "eot": EotPooling(7),
    "last_position": LastPositionPooling(),
}


@pytest.mark.parametrize("name", list(POOLINGS))
def test_poolings_run_in_onnx_runtime_with_dynamic_axes(name: str, tmp_path: Path) -> None:
    module = _Wrapped(POOLINGS[name]).eval()
    path = tmp_path / f"{name}.onnx"
    sample = _batch([3, 2], 3, seed=1)
    names = ["hidden", "attention_mask", "input_ids"]
    with legacy_exporter_warnings_silenced(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
        torch.onnx.export(
            module,
            sample,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=["pooled"],
            dynamic_axes={
                "hidden": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "input_ids": {0: "batch", 1: "sequence"},
                "pooled": {0: "batch"},
            },
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # Inputs a pooling does not read (e.g. ids for mean pooling) are left out of its graph.
    used = {graph_input.name for graph_input in session.get_inputs()}
    for lengths, sequence in (([4], 4), ([1, 6], 6), ([7, 1, 3, 5, 2, 7, 4], 9)):
        hidden, mask, ids = _batch(lengths, sequence, seed=len(lengths))
        ids[:, 0] = 7  # an end-of-text id for the non-legacy EOT pooling in every row
        arrays = {"hidden": hidden, "attention_mask": mask, "input_ids": ids}
        feeds = {name: tensor.numpy() for name, tensor in arrays.items() if name in used}
        (actual,) = session.run(["pooled"], feeds)
        with torch.no_grad():
            expected = module(hidden, mask, ids).numpy()
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
