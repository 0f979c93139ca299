"""LRU cache of text embeddings: product titles and descriptions repeat in real traffic."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class TextEmbeddingCache:
    """Thread-safe LRU keyed by the normalised text. ``capacity`` 0 disables it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            embedding = self._entries.get(key)
            if embedding is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return embedding

    def put(self, key: str, embedding: np.ndarray) -> None:
        if self.capacity == 0:
            return
        frozen = embedding.copy()
        frozen.flags.writeable = False  # shared between requests: nobody may modify it
        with self._lock:
            self._entries[key] = frozen
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
