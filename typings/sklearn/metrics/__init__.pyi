from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

def accuracy_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    normalize: bool = True,
    sample_weight: ArrayLike | None = None,
) -> float: ...
def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    normalize: Literal["true", "pred", "all"] | None = None,
) -> NDArray[Any]: ...
@overload
def precision_recall_fscore_support(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    beta: float = 1.0,
    labels: ArrayLike | None = None,
    pos_label: int | str = 1,
    average: None = None,
    warn_for: tuple[str, ...] | set[str] = ...,
    sample_weight: ArrayLike | None = None,
    zero_division: Literal["warn"] | float = "warn",
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]: ...
@overload
def precision_recall_fscore_support(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    beta: float = 1.0,
    labels: ArrayLike | None = None,
    pos_label: int | str = 1,
    average: Literal["binary", "micro", "macro", "samples", "weighted"],
    warn_for: tuple[str, ...] | set[str] = ...,
    sample_weight: ArrayLike | None = None,
    zero_division: Literal["warn"] | float = "warn",
) -> tuple[float, float, float, None]: ...
