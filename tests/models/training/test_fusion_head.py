"""The fusion head module, its training loop and its ONNX export (models/fusion*.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.export.export_support import cpu_session, run_session
from models.training.fusion_head import EMBEDDING_STRATEGIES, STRATEGIES, FusionHead
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
from models.training.multilabel_scores import MultilabelScores
from models.training.splits import TrainingDataError

LABELS = ("a", "b", "c")


def _head(strategy: str, image_dim: int = 8, text_dim: int = 4, seed: int = 0) -> FusionHead:
    torch.manual_seed(seed)
    head = FusionHead(image_dim, text_dim, len(LABELS), strategy, projection_dim=16).eval()
    with torch.no_grad():  # non-zero null embeddings (late: unequal weights), as after training
        if strategy == "late":
            head.label_modality_logits.normal_()
        else:
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


@pytest.mark.parametrize("strategy", EMBEDDING_STRATEGIES)
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
        if strategy == "late":
            head.label_modality_logits.normal_()
        else:
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


def _multilabel_features(rows: int, seed: int, image_dim: int = 8, text_dim: int = 4) -> FeatureSet:
    data = _features(rows, seed, image_dim, text_dim)
    targets = np.random.default_rng(seed + 100).random((rows, len(LABELS))) < 0.4
    targets[0] = True  # every label has a positive
    return FeatureSet(data.image, data.text, targets.astype(np.float32))


def test_late_fusion_mixes_per_label_weights_over_the_modalities_present() -> None:
    head, data = _head("late"), _features(5, seed=1)
    assert not hasattr(head, "null_image")  # late fusion has no null embedding
    image_logits, text_logits = (
        x.detach().numpy()
        for x in head.modality_logits_of(torch.from_numpy(data.image), torch.from_numpy(data.text))
    )
    weights = head.label_modality_weights()
    assert weights is not None
    w_image, w_text = np.asarray(weights[0]), np.asarray(weights[1])
    np.testing.assert_allclose(w_image + w_text, 1.0)
    assert not np.allclose(w_image, w_image[0])  # per label, not one scalar
    both = head_logits(head, data.image, data.text)
    np.testing.assert_allclose(both, w_image * image_logits + w_text * text_logits, rtol=1e-6)
    absent = np.zeros(5, dtype=bool)
    image_only = head_logits(head, data.image, data.text, None, absent)
    text_only = head_logits(head, data.image, data.text, absent, None)
    np.testing.assert_array_equal(image_only, image_logits.astype(np.float32))
    np.testing.assert_array_equal(text_only, text_logits.astype(np.float32))
    # Neither present (the service never sends it): zeros, not NaN.
    np.testing.assert_array_equal(head_logits(head, data.image, data.text, absent, absent), 0.0)
    assert head.modality_weights() is None
    assert _head("weighted").label_modality_weights() is None


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_late_onnx_head_with_one_modality_missing_is_the_other_classifier(
    task: str, tmp_path: Path
) -> None:
    # Trained for a few epochs with each task's loss, then exported as one ONNX head.
    make = _multilabel_features if task == "multilabel" else _features
    train, val = make(40, seed=11), make(12, seed=12)
    options = TrainOptions(max_epochs=3, projection_dim=16)
    head = train_strategy("late", train, val, LABELS, options, seed=0).head
    path = tmp_path / "late.onnx"
    assert export_head(head, path, val.image, val.text) <= 1e-5
    session = cpu_session(path)
    other = _features(12, seed=13)
    image_logits, text_logits = (
        x.detach().numpy().astype(np.float32)
        for x in head.modality_logits_of(torch.from_numpy(val.image), torch.from_numpy(val.text))
    )

    def onnx_logits(image: np.ndarray, text: np.ndarray, image_on: bool, text_on: bool) -> Any:
        feeds = {
            "image_features": image,
            "text_features": text,
            "image_present": presence(12, image_on).numpy(),
            "text_present": presence(12, text_on).numpy(),
        }
        return run_session(session, feeds)["logits"]

    text_alone = onnx_logits(val.image, val.text, False, True)
    image_alone = onnx_logits(val.image, val.text, True, False)
    np.testing.assert_allclose(text_alone, text_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(image_alone, image_logits, rtol=1e-6, atol=1e-6)
    # Whatever arrives for the missing modality (other rows, the service's zeros): same bits.
    for image in (other.image, np.zeros_like(val.image)):
        np.testing.assert_array_equal(onnx_logits(image, val.text, False, True), text_alone)
    for text in (other.text, np.zeros_like(val.text)):
        np.testing.assert_array_equal(onnx_logits(val.image, text, True, False), image_alone)
    both = onnx_logits(val.image, val.text, True, True)
    assert not np.allclose(both, text_alone)
    assert not np.allclose(both, image_alone)


def test_multilabel_training_uses_weighted_bce_and_stops_early() -> None:
    train, val = _multilabel_features(60, seed=4), _multilabel_features(30, seed=5)
    options = TrainOptions(max_epochs=500, patience=5, learning_rate=1e-2)
    result = train_strategy("concat", train, val, LABELS, options, seed=0)
    assert result.pos_weight is not None
    positives = train.labels.sum(axis=0)
    np.testing.assert_allclose(result.pos_weight, (60 - positives) / positives, rtol=1e-6)
    assert result.epochs_run == result.best_epoch + options.patience
    best = result.val_losses[result.best_epoch - 1]
    assert best == min(result.val_losses)
    assert fused_loss(result.head, val, result.pos_weight) == best
    assert isinstance(result.val, MultilabelScores)
    assert result.val.loss == best
    # The loss is torch's BCE-with-logits with pos_weight, as in training.
    logits = torch.from_numpy(head_logits(result.head, val.image, val.text)).double()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits,
        torch.from_numpy(val.labels).double(),
        pos_weight=torch.from_numpy(result.pos_weight).double(),
    )
    assert best == pytest.approx(float(expected), rel=1e-9)
    assert len(result.val.thresholds) == len(LABELS)
    assert all(0.01 <= t <= 0.99 for t in result.val.thresholds)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_late_training_is_deterministic(task: str) -> None:
    make = _multilabel_features if task == "multilabel" else _features
    train, val = make(40, seed=21), make(12, seed=22)
    options = TrainOptions(max_epochs=4, projection_dim=16)

    def state(seed: int) -> dict[str, torch.Tensor]:
        return train_strategy("late", train, val, LABELS, options, seed=seed).head.state_dict()

    first, again, other = state(0), state(0), state(1)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_multilabel_winner_is_best_micro_f1_then_lower_loss() -> None:
    def trained(strategy: str, micro_f1: float, loss: float) -> TrainedHead:
        result = train_strategy(
            strategy,
            _multilabel_features(6, seed=6),
            _multilabel_features(3, seed=7),
            LABELS,
            TrainOptions(max_epochs=1),
            seed=0,
        )
        assert isinstance(result.val, MultilabelScores)
        result.val = replace(result.val, micro_f1=micro_f1, loss=loss, macro_f1=1.0 - micro_f1)
        return result

    a, b, c = trained("late", 0.8, 0.5), trained("max", 0.9, 0.7), trained("gated", 0.9, 0.6)
    assert pick_winner([a, b, c]) is c
    assert pick_winner([a, b]) is b


def test_training_refuses_a_label_without_training_positives() -> None:
    train, val = _multilabel_features(20, seed=8), _multilabel_features(6, seed=9)
    train.labels[:, 1] = 0.0
    with pytest.raises(TrainingDataError, match="label 'b' has no positive training example"):
        train_strategy("mean", train, val, LABELS, TrainOptions(max_epochs=1), seed=0)
    with pytest.raises(ValueError, match="same task"):
        train_strategy("mean", _features(6, seed=1), val, LABELS, TrainOptions(), seed=0)
