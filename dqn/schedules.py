"""Schedules as pure functions of a counter."""

from __future__ import annotations

import numpy as np


def linear(start: float, end: float, duration: int, t: int) -> float:
    """`start` at t = 0, moving linearly to `end` at t = duration, then constant."""
    frac = min(max(t, 0) / duration, 1.0)
    return start + frac * (end - start)


def apex_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """Ape-X per-actor exploration: eps_i = base^(1 + alpha * i / (N - 1)) (Horgan et al.).

    Actor 0 explores most (eps = base), actor N-1 least (base^(1 + alpha)); one actor
    gets `base`.
    """
    if num_actors == 1:
        return np.array([base])
    i = np.arange(num_actors)
    return base ** (1.0 + alpha * i / (num_actors - 1))
