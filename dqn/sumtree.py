"""A sum tree whose batch operations are vectorized numpy (one pass per tree level).

Leaves hold non-negative priorities; node i holds the sum of its children 2i and 2i+1;
the root (node 1) holds the total. Setting K leaves and drawing K samples each cost
O(K log capacity) in ~log2(capacity) numpy calls, never a Python loop over items.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._leaves = 1 << max(1, int(np.ceil(np.log2(capacity))))
        self._depth = int(np.log2(self._leaves))
        self.nodes = np.zeros(2 * self._leaves, np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.nodes[self._leaves + np.asarray(index)]

    def set(self, index: np.ndarray, value: np.ndarray) -> None:
        """Set leaves `index` to `value` (for repeated indices the last value wins)."""
        pos = self._leaves + np.asarray(index, np.int64)
        if pos.size == 0:
            return
        self.nodes[pos] = value
        pos = np.unique(pos >> 1)
        for _ in range(self._depth):
            self.nodes[pos] = self.nodes[2 * pos] + self.nodes[2 * pos + 1]
            parents = pos >> 1
            pos = parents[np.r_[True, parents[1:] != parents[:-1]]]  # sorted: dedupe cheaply

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf index whose cumulative-sum interval holds each value of `mass`."""
        mass = np.array(mass, np.float64)
        node = np.ones(mass.shape, np.int64)
        for _ in range(self._depth):
            left = 2 * node
            left_sum = self.nodes[left]
            go_right = mass >= left_sum
            mass -= np.where(go_right, left_sum, 0.0)
            node = left + go_right
        return node - self._leaves

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Stratified proportional sample: one draw from each of `batch_size` equal slices.

        Rounding can land a draw on an empty leaf; such draws are redrawn.
        """
        total = self.total
        if total <= 0.0:
            raise ValueError("cannot sample from a tree whose priorities are all zero")
        bounds = np.arange(batch_size + 1) * (total / batch_size)
        index = self.find(rng.uniform(bounds[:-1], bounds[1:]))
        empty = self.get(index) <= 0.0
        while empty.any():
            index[empty] = self.find(rng.uniform(0.0, total, int(empty.sum())))
            empty = self.get(index) <= 0.0
        return index
