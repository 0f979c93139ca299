"""Train ``FusionHead``s on precomputed features: AdamW, cross-entropy (multiclass) or
BCE-with-logits with per-label positive weights (multilabel,
``models.training.multilabel_fitting``), modality dropout, early stopping on the fused
validation loss, and the validation scores that pick a winner: accuracy for multiclass,
micro-F1 at the tuned thresholds for multilabel (``models.training.multilabel_scores``); ties
go to the lower validation loss.

Everything random comes from the seed: ``torch.manual_seed`` (initial weights, dropout) and one
``torch.Generator`` (shuffling, modality-dropout masks), with torch's deterministic algorithms
on, so the same seed, data and options give the same head, bit for bit. Training runs on one
thread: the head is small, so threads cost more in overhead than they gain, and the summation
order (hence the head's bits) then does not depend on the machine's core count. Each strategy
starts from the seed afresh: its head does not depend on which other strategies were trained.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.evaluation.classification_metrics import classification_report, negative_log_likelihood
from models.evaluation.multilabel_calibration import binary_cross_entropy_from_logits
from models.training.fusion_head import (
    DEFAULT_DROPOUT,
    DEFAULT_PROJECTION_DIM,
    STRATEGIES,
    FusionHead,
)
from models.training.fusion_head import head_logits as head_logits
from models.training.fusion_head import presence as presence
from models.training.multilabel_fitting import positive_weights
from models.training.multilabel_scores import MultilabelScores, multilabel_validation_scores


@dataclass(frozen=True)
class TrainOptions:
    """The training recipe, shared by every strategy."""

    max_epochs: int = 200
    patience: int = 10  # epochs without a lower validation loss before stopping
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    modality_dropout: float = 0.25  # per example: P(image dropped) = P(text dropped) = this
    projection_dim: int = DEFAULT_PROJECTION_DIM
    dropout: float = DEFAULT_DROPOUT

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option out of range."""
        for name in ("max_epochs", "patience", "batch_size", "projection_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError("learning rate must be positive")
        if not 0 <= self.weight_decay < 1:
            raise ValueError("weight decay must be in [0, 1)")
        if not 0 <= self.modality_dropout <= 0.5:
            # Image and text are never dropped together, so each can be dropped at most half
            # the time.
            raise ValueError("modality dropout must be in [0, 0.5]")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")


@dataclass(frozen=True)
class FeatureSet:
    """Features and targets of one split: class indices (multiclass) or a multi-hot matrix
    (multilabel)."""

    image: np.ndarray  # float32 [N, Di]
    text: np.ndarray  # float32 [N, Dt]
    labels: np.ndarray  # int64 [N], or float32 [N, labels] for multilabel

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def multilabel(self) -> bool:
        return bool(self.labels.ndim == 2)


@dataclass(frozen=True)
class ValScores:
    """A head's scores on the validation split (fused: both modalities present)."""

    accuracy: float
    loss: float
    macro_f1: float
    image_only_accuracy: float  # the text marked missing
    text_only_accuracy: float  # the image marked missing

    @property
    def primary(self) -> float:
        """The score the winner is picked on."""
        return self.accuracy


@dataclass
class TrainedHead:
    """One strategy's head, restored to its best epoch, and how training went."""

    strategy: str
    head: FusionHead
    epochs_run: int
    best_epoch: int
    val_losses: list[float]  # fused validation loss after each epoch
    seconds: float
    val: ValScores | MultilabelScores
    pos_weight: np.ndarray | None = None  # multilabel: the loss's per-label positive weights
    parameters: int = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = sum(p.numel() for p in self.head.parameters())


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic algorithms and one thread inside the block; the previous settings after."""
    previous, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(threads)


def modality_dropout_masks(
    rows: int, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Presence inputs with the image dropped with ``probability``, the text dropped with
    ``probability``, never both (one uniform draw per example decides)."""
    draw = torch.rand(rows, generator=generator, dtype=torch.float64)
    image_dropped = draw < probability
    text_dropped = (draw >= probability) & (draw < 2 * probability)
    return (
        (~image_dropped).to(torch.float32).unsqueeze(1),
        (~text_dropped).to(torch.float32).unsqueeze(1),
    )


def fused_loss(head: FusionHead, data: FeatureSet, pos_weight: np.ndarray | None = None) -> float:
    """The training loss with both modalities present: mean cross-entropy, or for multilabel
    the mean BCE with ``pos_weight``."""
    logits = head_logits(head, data.image, data.text)
    if data.multilabel:
        return binary_cross_entropy_from_logits(logits, data.labels, pos_weight=pos_weight)
    return negative_log_likelihood(logits, data.labels)


def validation_scores(head: FusionHead, val: FeatureSet, labels: Sequence[str]) -> ValScores:
    logits = head_logits(head, val.image, val.text)
    fused = classification_report(val.labels, logits.argmax(axis=1), labels)
    none = np.zeros(len(val), dtype=bool)

    def single(image_present: np.ndarray | None, text_present: np.ndarray | None) -> float:
        only = head_logits(head, val.image, val.text, image_present, text_present)
        return float(np.mean(only.argmax(axis=1) == val.labels))

    return ValScores(
        accuracy=fused.accuracy,
        loss=negative_log_likelihood(logits, val.labels),
        macro_f1=fused.macro_f1,
        image_only_accuracy=single(None, none),
        text_only_accuracy=single(none, None),
    )


def train_strategy(
    strategy: str,
    train: FeatureSet,
    val: FeatureSet,
    labels: Sequence[str],
    options: TrainOptions,
    seed: int,
    *,
    progress: bool = False,
) -> TrainedHead:
    """Train one strategy; stop after ``patience`` epochs without a lower validation loss and
    restore the epoch with the lowest."""
    started = time.perf_counter()
    if train.multilabel != val.multilabel:
        raise ValueError("the training and validation targets must be of the same task")
    # Multilabel: raises TrainingDataError for a label without a positive in train.
    pos_weight = positive_weights(train.labels, labels) if train.multilabel else None
    with deterministic():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        head = FusionHead(
            train.image.shape[1],
            train.text.shape[1],
            len(labels),
            strategy,
            projection_dim=options.projection_dim,
            dropout=options.dropout,
        )
        optimiser = torch.optim.AdamW(
            head.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
        )
        image, text = torch.from_numpy(train.image), torch.from_numpy(train.text)
        targets = torch.from_numpy(train.labels)
        best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(head.state_dict())
        losses: list[float] = []
        bar = tqdm(
            total=options.max_epochs,
            desc=f"training {strategy}",
            unit="epoch",
            disable=not progress,
        )
        with bar:
            for epoch in range(1, options.max_epochs + 1):
                _train_epoch(
                    head, optimiser, (image, text, targets), options, generator, pos_weight
                )
                losses.append(fused_loss(head, val, pos_weight))
                bar.update(1)
                bar.set_postfix(val_loss=f"{losses[-1]:.4f}", best=best_epoch, refresh=False)
                if losses[-1] < best_loss:
                    best_loss, best_epoch = losses[-1], epoch
                    best_state = copy.deepcopy(head.state_dict())
                elif epoch - best_epoch >= options.patience:
                    break
        head.load_state_dict(best_state)
        head.eval()
        scores: ValScores | MultilabelScores
        if pos_weight is not None:
            scores = multilabel_validation_scores(head, val.image, val.text, val.labels, pos_weight)
        else:
            scores = validation_scores(head, val, labels)
    return TrainedHead(
        strategy=strategy,
        head=head,
        epochs_run=len(losses),
        best_epoch=best_epoch,
        val_losses=losses,
        seconds=time.perf_counter() - started,
        val=scores,
        pos_weight=pos_weight,
    )


def _train_epoch(
    head: FusionHead,
    optimiser: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    options: TrainOptions,
    generator: torch.Generator,
    pos_weight: np.ndarray | None = None,
) -> None:
    image, text, targets = data
    weights = None if pos_weight is None else torch.from_numpy(pos_weight)
    head.train()
    order = torch.randperm(len(targets), generator=generator)
    for batch in torch.split(order, options.batch_size):
        image_present, text_present = modality_dropout_masks(
            len(batch), options.modality_dropout, generator
        )
        optimiser.zero_grad()
        logits = head(image[batch], text[batch], image_present, text_present)
        if weights is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, targets[batch], pos_weight=weights
            )
        else:
            loss = nn.functional.cross_entropy(logits, targets[batch])
        torch.autograd.backward(loss)
        optimiser.step()


def train_strategies(
    strategies: Sequence[str],
    train: FeatureSet,
    val: FeatureSet,
    labels: Sequence[str],
    options: TrainOptions,
    seed: int,
    *,
    progress: bool = False,
) -> list[TrainedHead]:
    """Train each strategy (in the given order) with the same data, options and seed."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ValueError(f"strategies must be some of {', '.join(STRATEGIES)}; got {unknown}")
    return [
        train_strategy(s, train, val, labels, options, seed, progress=progress) for s in strategies
    ]


def pick_winner(results: Sequence[TrainedHead]) -> TrainedHead:
    """Best validation accuracy (multiclass) or micro-F1 at the tuned thresholds (multilabel);
    ties go to the lower validation loss, then the earlier one."""
    return max(results, key=lambda r: (r.val.primary, -r.val.loss))
