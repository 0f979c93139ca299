from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

# Only numpy-array inputs are declared: each comes back as two arrays of its own type.
_ArrayT = TypeVar("_ArrayT", bound=np.ndarray[Any, Any])

def train_test_split(
    *arrays: _ArrayT,
    test_size: float | None = None,
    train_size: float | None = None,
    random_state: int | np.random.RandomState | None = None,
    shuffle: bool = True,
    stratify: ArrayLike | None = None,
) -> list[_ArrayT]: ...
