"""The fusion head module, its training loop and its ONNX export (models/fusion*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.training.fusion_head import STRATEGIES, FusionHead
from models.training.fusion_training import (
    FeatureSet,
    TrainedHead,
    TrainOptions,
    ValScores,
    fused_loss,
    head_logits,
    modality_dropout_masks,
    pick_winner,
    presence,
    train_strategy,
)
from models.training.head_bundle import export_head

LABELS = ("a", "b", "c")


def _head(strategy: str, image_dim: int = 8, text_dim: int = 4, seed: int = 0) -> FusionHead:
    torch.manual_seed(seed)
    head = FusionHead(image_dim, text_dim, len(LABELS), strategy, projection_dim=16).eval()
    with torch.no_grad():  # non-zero null embeddings, as after training
        head.null_image.normal_()
        head.null_text.normal_()
    return head


def _features(rows: int, seed: int, image_dim: int = 8, text_dim: int = 4) -> FeatureSet:
    rng = np.random.default_rng(seed)
    return FeatureSet(
        image=rng.normal(size=(rows, image_dim)).astype(np.float32),
        text=rng.normal(size=(rows, text_dim)).astype(np.float32),
        labels=rng.integers(0, len(LABELS), rows),
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_modality_uses_only_the_null_embedding(strategy: str) -> None:
    head, data, other = _head(strategy), _features(5, seed=1), _features(5, seed=2)
    logits = head_logits(head, data.image, data.text)
    assert logits.shape == (5, 3)
    assert logits.dtype == np.float32
    absent = np.zeros(5, dtype=bool)
    for image_present, text_present in ((absent, None), (None, absent)):
        # Whatever features arrive for the missing modality (other rows, zeros as the service
        # sends), the output is the same, and differs from the output with it present.
        missing = head_logits(head, data.image, data.text, image_present, text_present)
        image = other.image if image_present is not None else data.image
        text = other.text if text_present is not None else data.text
        replaced = head_logits(head, image, text, image_present, text_present)
        zeros = head_logits(
            head,
            image * 0 if image_present is not None else image,
            text * 0 if text_present is not None else text,
            image_present,
            text_present,
        )
        np.testing.assert_array_equal(missing, replaced)
        np.testing.assert_array_equal(missing, zeros)
        assert not np.allclose(missing, logits)
    # And what stands in is the learned null embedding.
    ones, zeros_ = presence(5), presence(5, present=False)
    image, text = head.embeddings(
        torch.from_numpy(data.image), torch.from_numpy(data.text), zeros_, ones
    )
    torch.testing.assert_close(image, head.null_image.detach().expand(5, -1))
    torch.testing.assert_close(text, torch.from_numpy(data.text).double() * 2.0)  # sqrt(4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_export_matches_torch_and_stays_under_1mb_at_default_size(
    strategy: str, tmp_path: Path
) -> None:
    # The default bundle's widths: EfficientNet-Lite0 1280, MiniLM 384, 10 classes.
    torch.manual_seed(0)
    head = FusionHead(1280, 384, 10, strategy).eval()
    with torch.no_grad():
        head.null_image.normal_()
    data = _features(7, seed=3, image_dim=1280, text_dim=384)
    path = tmp_path / "head.onnx"
    diff = export_head(head, path, data.image, data.text)  # checks <= 1e-5 in all patterns
    assert diff <= 1e-5
    assert path.stat().st_size < 1_000_000


def test_modality_dropout_never_drops_both() -> None:
    image, text = modality_dropout_masks(100_000, 0.25, torch.Generator().manual_seed(0))
    assert image.shape == (100_000, 1)
    assert not torch.any((image == 0) & (text == 0))
    assert float(1 - image.mean()) == pytest.approx(0.25, abs=0.01)
    assert float(1 - text.mean()) == pytest.approx(0.25, abs=0.01)
    none, _ = modality_dropout_masks(1000, 0.0, torch.Generator().manual_seed(0))
    assert torch.all(none == 1)


def test_early_stopping_stops_and_restores_the_best_epoch() -> None:
    # Random labels: the training set is memorised and the validation loss soon rises.
    train, val = _features(60, seed=4), _features(30, seed=5)
    options = TrainOptions(max_epochs=500, patience=5, learning_rate=1e-2)
    result = train_strategy("concat", train, val, LABELS, options, seed=0)
    assert result.epochs_run < options.max_epochs
    assert result.epochs_run == result.best_epoch + options.patience
    best = result.val_losses[result.best_epoch - 1]
    assert best == min(result.val_losses)
    assert result.val_losses[-1] > best
    assert fused_loss(result.head, val) == best  # the best epoch's weights, restored
    assert result.val.loss == best


def test_winner_is_best_accuracy_then_lower_loss() -> None:
    def trained(strategy: str, accuracy: float, loss: float) -> TrainedHead:
        result = train_strategy(
            strategy,
            _features(6, seed=6),
            _features(3, seed=7),
            LABELS,
            TrainOptions(max_epochs=1),
            seed=0,
        )
        result.val = ValScores(accuracy, loss, 0.0, 0.0, 0.0)
        return result

    a, b, c = trained("mean", 0.8, 0.5), trained("max", 0.9, 0.7), trained("gated", 0.9, 0.6)
    assert pick_winner([a, b, c]) is c
    assert pick_winner([a, b]) is b
