"""Classification heads over frozen encoder embeddings, and the one training recipe they share.

The image-only, text-only and fused heads differ only in which embeddings they see, so any
difference in their scores comes from the modalities, not from the recipe.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters shared by every head."""

    hidden: int = 0  # 0: a single linear layer; > 0: one hidden ReLU layer of that width
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 10  # epochs without a better validation loss before stopping


class Head(nn.Module):
    """Scale each used modality's unit vector by sqrt(its dim), concatenate, classify.

    Image features are L2-normalised first: EfficientNet features are unnormalised activations
    whose overall scale varies per image (contrast, object size) and should not act as a
    confidence knob. Text embeddings are already unit length (the encoder normalises). The
    fixed sqrt(dim) factor gives every coordinate unit mean square, so both modalities start on
    an equal footing whatever their width. ``use_image``/``use_text`` select the modalities;
    the unused input is accepted and ignored so every head has the same call signature.

    The head computes in float64 internally (inputs and logits stay float32): in float32, the
    summation-order differences between torch and ONNX Runtime reach ~1e-5 on logits of
    magnitude ~17, which is at the tolerance the export is checked against. It is a 1664x10
    layer, so the cost is nil.
    """

    def __init__(
        self,
        classes: int,
        *,
        use_image: bool,
        use_text: bool,
        image_dim: int = 1280,
        text_dim: int = 384,
        hidden: int = 0,
    ) -> None:
        super().__init__()
        self.use_image, self.use_text = use_image, use_text
        self.image_scale, self.text_scale = image_dim**0.5, text_dim**0.5
        width = image_dim * use_image + text_dim * use_text
        if hidden:
            classifier: nn.Module = nn.Sequential(
                nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, classes)
            )
        else:
            classifier = nn.Linear(width, classes)
        self.classifier = classifier.to(torch.float64)

    def inputs(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.use_image:
            image = nn.functional.normalize(image_features.to(torch.float64), p=2.0, dim=1)
            parts.append(image * self.image_scale)
        if self.use_text:
            parts.append(text_features.to(torch.float64) * self.text_scale)
        return torch.cat(parts, dim=1)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.inputs(image_features, text_features))
        return logits.to(torch.float32)


@dataclass
class TrainResult:
    head: Head
    epochs_run: int
    best_epoch: int
    best_val_loss: float


def train_head(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    classes: int,
    modalities: set[str],
    recipe: Recipe,
    seed: int,
) -> TrainResult:
    """Train on (image features, text features, labels) with early stopping on ``val`` loss."""
    torch.manual_seed(seed)
    image, text, labels = (torch.from_numpy(a) for a in train)
    val_image, val_text, val_labels = (torch.from_numpy(a) for a in val)
    head = Head(
        classes,
        use_image="image" in modalities,
        use_text="text" in modalities,
        image_dim=image.shape[1],
        text_dim=text.shape[1],
        hidden=recipe.hidden,
    )
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    shuffle = torch.Generator().manual_seed(seed)
    best = (float("inf"), 0, copy.deepcopy(head.state_dict()))
    epoch = 0
    for epoch in range(1, recipe.max_epochs + 1):
        head.train()
        order = torch.randperm(len(labels), generator=shuffle)
        for batch in order.split(recipe.batch_size):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(head(image[batch], text[batch]), labels[batch])
            loss.backward()
            optimiser.step()
        val_loss = evaluate_loss(head, val_image, val_text, val_labels)
        if val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(head.state_dict()))
        elif epoch - best[1] >= recipe.patience:
            break
    head.load_state_dict(best[2])
    head.eval()
    return TrainResult(head=head, epochs_run=epoch, best_epoch=best[1], best_val_loss=best[0])


def evaluate_loss(
    head: Head, image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor
) -> float:
    head.eval()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(head(image, text), labels))


def predict_proba(head: Head, image: np.ndarray, text: np.ndarray) -> np.ndarray:
    head.eval()
    with torch.no_grad():
        logits = head(torch.from_numpy(image), torch.from_numpy(text))
    return torch.softmax(logits, dim=1).numpy()
