"""A replay shard: a FrameReplay behind a Ray actor, with the replay-ratio limiter.

The actor is threaded (several calls at once) so that a blocked `sample` or `add` waits
on a condition variable — never spinning — while other calls go through; one lock
serializes access to the store.

With a `folder`, the shard saves its store there on `save_replay` (only what changed,
written in the background: dqn.replay_files) and, when it starts, restores what the
folder holds, its limiter's counts included: after a resume, or after Ray restarted a
shard that died, it answers from the replay it had at the last save.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import ray

from dqn.rate_limiter import RateLimiter
from dqn.recorder import Records
from dqn.replay import Batch, FrameReplay
from dqn.replay_files import ReplayFiles


class ShardStats(NamedTuple):
    size: int
    capacity: int
    inserted: int
    sampled: int
    ready: bool     # past its minimum fill: sample() can answer with a batch
    pid: int        # of the actor's process: a new one after Ray restarted it
    reconstructed: bool  # this process is a restart by Ray
    restored: int   # records restored from the folder when this process started


@ray.remote
class ReplayShard:
    def __init__(self, store_kwargs: dict, limiter: RateLimiter, timeout_s: float = 1.0,
                 folder: str | None = None):
        self.store = FrameReplay(**store_kwargs)
        self.limiter = limiter
        self.timeout_s = timeout_s
        self.cond = threading.Condition()
        self.files = ReplayFiles(Path(folder)) if folder else None
        counts = self.files.restore(self.store) if self.files else None
        if counts:
            self.limiter.inserted, self.limiter.sampled = counts["inserted"], counts["sampled"]
        self.restored = len(self.store)

    def add(self, records: Records, streams: np.ndarray,
            priorities: np.ndarray | None = None) -> int:
        """Insert a chunk, first waiting while collectors run ahead of the learner."""
        n = records.action.size
        with self.cond:
            self.cond.wait_for(lambda: self.limiter.can_insert(n))
            self.store.add(records, streams, priorities)
            self.limiter.insert(n)
            self.cond.notify_all()
            return len(self.store)

    def sample(self, batch_size: int, beta: float) -> Batch | None:
        """A batch, or None when the limiter held sampling back for timeout_s."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.limiter.can_sample(batch_size)
                                      and len(self.store) > 0, timeout=self.timeout_s):
                return None
            batch = self.store.sample(batch_size, beta)
            self.limiter.sample(batch_size)
            self.cond.notify_all()
            return batch

    def update_priorities(self, index: np.ndarray, td_abs: np.ndarray) -> None:
        with self.cond:
            self.store.update_priorities(index, td_abs)

    def stats(self) -> ShardStats:
        with self.cond:
            return ShardStats(len(self.store), self.store.capacity, self.limiter.inserted,
                              self.limiter.sampled, self.limiter.ready, os.getpid(),
                              ray.get_runtime_context().was_current_actor_reconstructed,
                              self.restored)

    def save_replay(self) -> str | None:
        """Start saving the store to the folder; returns why it did not start, or None.
        Inserts and samples go on while it writes."""
        with self.cond:
            counts = {"inserted": self.limiter.inserted, "sampled": self.limiter.sampled}
            return None if self.files.save(self.store, counts) else self.files.last_error

    def replay_saved(self, timeout_s: float) -> str | None:
        """Wait up to timeout_s for the save in flight; why it failed, or None."""
        self.files.wait(timeout_s)
        if self.files.busy():
            return f"replay still being written after {timeout_s:g} s"
        return self.files.last_error
