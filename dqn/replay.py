"""Replay storage that keeps every frame once and rebuilds stacks at sample time.

Layout. The store holds `num_streams` circular streams (one per env that writes to it)
of `capacity // num_streams` records each; a record is one frame plus the action,
reward and flags of the transition that starts at it (see `dqn.recorder`). Position
`g` of stream `s` counts records ever written to it; it lives in slot `g % per_stream`.
A sampled transition is named by the id `g * num_streams + s`, so a priority update
for a record that has since been overwritten is recognised and dropped.

A record `g` is *live* (may be sampled) when
- it is not an episode's `last` frame (no action was taken there),
- the frames its stack reads (g - stack + 1 .. g) have not been overwritten,
- its n-step window is complete: the bootstrap record g + m has been written, and
- no new episode starts inside the window (a stream cut by a restarted writer).

Stacks are gathered with one fancy index over all (batch, 2, stack) positions; frames
older than the episode's `first` frame are zeros, as `AtariVectorEnv` pads at reset.
Sampling is uniform over live records, or proportional to priority^alpha through a sum
tree with importance weights (N * P(i))^-beta, normalized by the batch maximum so they
only ever scale updates down (Schaul et al. 2016).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dqn.nstep import nstep_returns
from dqn.recorder import Records
from dqn.sumtree import SumTree


class Batch(NamedTuple):
    obs: np.ndarray        # (B, stack, *frame)
    action: np.ndarray     # (B,) int64
    reward: np.ndarray     # (B,) float32: the n-step return
    discount: np.ndarray   # (B,) float32: gamma^m, 0 after a terminal
    next_obs: np.ndarray   # (B, stack, *frame): state t + m
    weight: np.ndarray     # (B,) float32 importance weights (ones when uniform)
    index: np.ndarray      # (B,) int64 ids for update_priorities


class FrameReplay:
    def __init__(self, capacity: int, num_streams: int, frame_shape: tuple[int, ...],
                 frame_dtype: np.dtype, *, stack: int, n_step: int, gamma: float,
                 prioritized: bool = False, alpha: float = 0.6,
                 priority_eps: float = 1e-6, seed: int = 0):
        self.num_streams = num_streams
        self.per_stream = capacity // num_streams
        self.capacity = self.per_stream * num_streams
        self.stack, self.n_step, self.gamma = stack, n_step, gamma
        if self.per_stream < 2 * (stack + n_step + 1):
            raise ValueError(f"capacity {capacity} is too small for {num_streams} streams")
        slots = self.capacity
        self.frame = np.zeros((slots, *frame_shape), frame_dtype)
        self.action = np.zeros(slots, np.uint8)
        self.reward = np.zeros(slots, np.float32)
        self.terminated = np.zeros(slots, bool)
        self.first = np.zeros(slots, bool)
        self.last = np.zeros(slots, bool)
        self.live = np.zeros(slots, bool)
        self.written = np.zeros(num_streams, np.int64)  # records ever written per stream
        self.num_live = 0
        self.prioritized, self.alpha, self.priority_eps = prioritized, alpha, priority_eps
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)
        if prioritized:
            self.tree = SumTree(slots)
            self.pending = np.full(slots, np.nan, np.float32)  # priority given at add

    def __len__(self) -> int:
        return self.num_live

    def nbytes(self) -> int:
        arrays = [self.frame, self.action, self.reward, self.terminated, self.first,
                  self.last, self.live]
        if self.prioritized:
            arrays += [self.tree.nodes, self.pending]
        return sum(a.nbytes for a in arrays)

    # -- writing ---------------------------------------------------------------------

    def add(self, records: Records, streams: np.ndarray | None = None,
            priorities: np.ndarray | None = None) -> None:
        """Append (T, E) records, column e to stream `streams[e]` (default: 0..E-1).

        `priorities` (T, E), optional, are initial |TD| estimates; a record without one
        gets the largest priority seen so far when it becomes live.
        """
        steps, width = records.action.shape
        streams = np.arange(width) if streams is None else np.asarray(streams, np.int64)
        if steps + self.stack + self.n_step > self.per_stream:
            raise ValueError(f"a chunk of {steps} steps does not fit streams of "
                             f"{self.per_stream} records")
        start = self.written[streams]                       # (E,)
        # Records about to be overwritten, and those whose stacks would read them.
        self._kill(streams, start - self.per_stream, steps + self.stack - 1)
        slot = self._slot(streams[None], start[None] + np.arange(steps)[:, None])  # (T, E)
        self.frame[slot] = records.frame
        self.action[slot] = records.action
        self.reward[slot] = records.reward
        self.terminated[slot] = records.terminated
        self.first[slot] = records.first
        self.last[slot] = records.last
        if self.prioritized:
            self.pending[slot] = np.nan if priorities is None else priorities
        self.written[streams] = start + steps
        # Records whose n-step window this chunk completed.
        self._revive(streams, start - self.n_step, steps + self.n_step)

    def _slot(self, stream: np.ndarray, position: np.ndarray) -> np.ndarray:
        return stream * self.per_stream + position % self.per_stream

    def _span(self, streams: np.ndarray, begin: np.ndarray, length: int):
        stream = np.repeat(streams, length)
        position = (begin[:, None] + np.arange(length)[None]).ravel()
        keep = position >= 0
        return stream[keep], position[keep]

    def _kill(self, streams: np.ndarray, begin: np.ndarray, length: int) -> None:
        stream, position = self._span(streams, begin, length)
        slot = self._slot(stream, position)
        slot = slot[self.live[slot]]
        self.live[slot] = False
        self.num_live -= len(slot)
        if self.prioritized:
            self.tree.set(slot, 0.0)

    def _revive(self, streams: np.ndarray, begin: np.ndarray, length: int) -> None:
        stream, position = self._span(streams, begin, length)
        slot = self._slot(stream, position)
        fresh = self._valid(stream, position) & ~self.live[slot]
        slot = np.unique(slot[fresh])
        self.live[slot] = True
        self.num_live += len(slot)
        if self.prioritized:
            given = self.pending[slot]
            given = np.where(np.isnan(given), self.max_priority, given + self.priority_eps)
            self.max_priority = max(self.max_priority, float(given.max(initial=0.0)))
            self.tree.set(slot, given ** self.alpha)

    def _valid(self, stream: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Which records (stream, position) may be sampled now (see the module doc)."""
        written = self.written[stream]
        oldest = np.maximum(written - self.per_stream + self.stack - 1, 0)
        valid = (position >= oldest) & (position < written)
        valid &= ~self.last[self._slot(stream, position)]
        window = self._window(stream, position)
        valid &= position + window.steps < written
        ahead = np.arange(1, self.n_step + 1)[None]
        first_ahead = self.first[self._slot(stream[:, None], position[:, None] + ahead)]
        valid &= ~(first_ahead & (ahead <= window.steps[:, None])).any(axis=1)
        return valid

    def _window(self, stream: np.ndarray, position: np.ndarray):
        k = np.arange(self.n_step)[None]
        here = self._slot(stream[:, None], position[:, None] + k)
        after = self._slot(stream[:, None], position[:, None] + k + 1)
        return nstep_returns(self.reward[here], self.terminated[here], self.last[after],
                             self.gamma)

    # -- saving and restoring (dqn.replay_files) ------------------------------------

    def runs(self, stream: int, begin: int, end: int) -> list[tuple[int, slice]]:
        """Records begin..end-1 of `stream` (still in the store) as at most two runs of
        consecutive slots: (the run's first position, its slots)."""
        runs, position = [], begin
        while position < end:
            offset = position % self.per_stream
            length = min(end - position, self.per_stream - offset)
            start = stream * self.per_stream + offset
            runs.append((position, slice(start, start + length)))
            position += length
        return runs

    def priorities(self) -> np.ndarray:
        """The sum tree's leaf of every slot (priority^alpha; 0 where not live)."""
        return self.tree.get(np.arange(self.capacity))

    def restore_written(self, written: np.ndarray, oldest: np.ndarray, max_priority: float,
                        priorities: np.ndarray | None = None) -> None:
        """After records oldest..written-1 of each stream were put back into their slots
        (`runs`): the records written per stream, which of them are live, and their learned
        priorities where given. A stream restored from past its first record starts an
        episode there, as a stream cut by a restarted writer does: no stack reaches back
        into records that were not restored."""
        self.written[:] = written
        self.max_priority = max_priority
        streams = np.arange(self.num_streams)
        cut = (oldest > 0) & (oldest < written)
        self.first[self._slot(streams[cut], oldest[cut])] = True
        self._revive(streams, np.asarray(oldest, np.int64), self.per_stream)
        if self.prioritized and priorities is not None:
            live = np.flatnonzero(self.live)
            self.tree.set(live, priorities[live])

    # -- sampling --------------------------------------------------------------------

    def sample(self, batch_size: int, beta: float = 1.0) -> Batch:
        if self.num_live == 0:
            raise ValueError("replay holds no sampleable transition yet")
        if self.prioritized:
            slot = self.tree.sample(batch_size, self.rng)
            prob = self.tree.get(slot) / self.tree.total
            weight = (self.num_live * prob) ** -beta
            weight = (weight / weight.max()).astype(np.float32)
        else:
            slot = self._sample_uniform(batch_size)
            weight = np.ones(batch_size, np.float32)
        stream = slot // self.per_stream
        written = self.written[stream]
        position = written - 1 - (written - 1 - slot % self.per_stream) % self.per_stream
        window = self._window(stream, position)
        # (2, B, S) positions: obs and next_obs come out as two contiguous halves, which
        # Ray ships without copying (a strided view would be copied to serialize it).
        states = np.stack([position, position + window.steps])                  # (2, B)
        back = np.arange(self.stack - 1, -1, -1)                                # oldest first
        pos = states[..., None] - back                                          # (2, B, S)
        frames = self.frame[self._slot(stream[None, :, None], pos)]
        firsts = self.first[self._slot(stream[None, :, None], pos)]
        # A frame is padding when a `first` frame lies after it within the stack.
        later_first = np.logical_or.accumulate(firsts[..., ::-1], axis=-1)[..., ::-1]
        pad = np.zeros_like(later_first)
        pad[..., :-1] = later_first[..., 1:]
        frames[pad] = 0
        return Batch(obs=frames[0], action=self.action[slot].astype(np.int64),
                     reward=window.ret, discount=window.discount, next_obs=frames[1],
                     weight=weight, index=position * self.num_streams + stream)

    def _sample_uniform(self, batch_size: int) -> np.ndarray:
        filled = np.minimum(self.written, self.per_stream)
        bounds = np.cumsum(filled)
        slot = np.empty(batch_size, np.int64)
        todo = np.arange(batch_size)
        while len(todo):
            draw = self.rng.integers(0, bounds[-1], len(todo))
            stream = np.searchsorted(bounds, draw, side="right")
            offset = draw - (bounds[stream] - filled[stream])
            candidate = stream * self.per_stream + offset
            ok = self.live[candidate]
            slot[todo[ok]] = candidate[ok]
            todo = todo[~ok]
        return slot

    def update_priorities(self, index: np.ndarray, td_abs: np.ndarray) -> None:
        """New priorities |TD| + eps for sampled ids; ids overwritten since are dropped."""
        if not self.prioritized:
            return
        index = np.asarray(index, np.int64)
        stream, position = index % self.num_streams, index // self.num_streams
        slot = self._slot(stream, position)
        current = (position >= self.written[stream] - self.per_stream) & self.live[slot]
        priority = np.asarray(td_abs, np.float64)[current] + self.priority_eps
        if len(priority):
            self.max_priority = max(self.max_priority, float(priority.max()))
            self.tree.set(slot[current], priority ** self.alpha)
