"""n-step returns over a window of replay records, vectorized over a batch.

For a transition starting at record t, with rewards r, terminal flags d and episode-end
flags e (e_k: record t+k+1 is an episode's `last` frame), the window stops after

    m = min(n, 1 + min{k : d_k or e_k})        (the first k at which it stops)

steps, and

    return   = sum_{k<m} gamma^k r_k
    discount = gamma^m * (1 - d_{m-1})          (0 when the game ended inside the window)
    bootstrap state = s_{t+m}

A truncated episode (the frame cap) ends the window with e_k but leaves d_k = 0, so its
final frame is bootstrapped from with gamma^m; a terminal (d_k = 1) is never.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class NStep(NamedTuple):
    ret: np.ndarray       # (B,) float32
    discount: np.ndarray  # (B,) float32, 0 after a terminal
    steps: np.ndarray     # (B,) int64: m, so the bootstrap state is t + m


def nstep_returns(reward: np.ndarray, terminated: np.ndarray, ends_after: np.ndarray,
                  gamma: float) -> NStep:
    """`reward`, `terminated`, `ends_after`: (B, n) windows starting at each transition.

    `ends_after[:, k]` is true when record t+k+1 is an episode's final frame.
    """
    batch, n = reward.shape
    stop = terminated | ends_after
    any_stop = stop.any(axis=1)
    steps = np.where(any_stop, stop.argmax(axis=1) + 1, n)
    k = np.arange(n)
    inside = k[None, :] < steps[:, None]
    powers = gamma ** k
    ret = (reward * powers * inside).sum(axis=1)
    done = terminated[np.arange(batch), steps - 1]
    discount = np.where(done, 0.0, gamma ** steps)
    return NStep(ret.astype(np.float32), discount.astype(np.float32), steps.astype(np.int64))


def chunk_priorities(reward: np.ndarray, terminated: np.ndarray, first: np.ndarray,
                     last: np.ndarray, action: np.ndarray, q: np.ndarray, gamma: float,
                     n: int) -> np.ndarray:
    """Initial priorities |n-step target - Q(s_t, a_t)| for a collector's chunk (Ape-X).

    All arrays are time-major (T, E); `q` (T, E, A) holds the Q-values the collector
    computed when it acted on each record's observation, so the bootstrap value of record
    t + m is already at hand. Records whose window runs past the chunk, `last` frames and
    windows cut by a new episode get NaN: the replay gives them the running max priority.
    """
    steps, width = reward.shape

    def windows(x: np.ndarray, fill) -> np.ndarray:  # (T, E, n) looking ahead from t
        padded = np.concatenate([x, np.full((n + 1, width), fill, x.dtype)])
        return np.stack([padded[k:k + steps] for k in range(1, n + 1)], axis=-1)

    here = lambda x, fill: np.concatenate([x[:, :, None], windows(x, fill)[..., :-1]], -1)  # noqa: E731
    flat = lambda x: x.reshape(steps * width, n)  # noqa: E731
    window = nstep_returns(flat(here(reward, 0.0)), flat(here(terminated, False)),
                           flat(windows(last, False)), gamma)
    m = window.steps.reshape(steps, width)
    t = np.arange(steps)[:, None] + m                                     # bootstrap index
    inside = t < steps
    e = np.broadcast_to(np.arange(width), (steps, width))
    bootstrap = q.max(axis=2)[np.minimum(t, steps - 1), e]
    target = window.ret.reshape(steps, width) + window.discount.reshape(steps, width) * bootstrap
    q_taken = np.take_along_axis(q, action[..., None].astype(np.int64), axis=2)[..., 0]
    ahead = np.arange(1, n + 1)
    cut = (windows(first, True) & (ahead <= m[..., None])).any(axis=-1)
    valid = inside & ~last & ~cut
    return np.where(valid, np.abs(target - q_taken), np.nan).astype(np.float32)
