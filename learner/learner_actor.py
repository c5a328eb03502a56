"""The learner actor: DQNLearner fed by replay shards, on a GPU when there is one.

A background thread keeps `prefetch_batches` sampled batches ready, already on the
learner's device, so the update loop never waits on replay when replay keeps up; it keeps
`samples_in_flight` sample requests outstanding, so that shards gather and ship the next
batches while it stages the last one. The same thread does the part of each update that
does not depend on the online network — the frames turned into the network's float
input, and the target network's pass over the next states (the target changes only at a
sync; a value computed before a sync is computed again) — so on a CPU that work, about a
quarter of an update, runs beside the updates on another core instead of inside them.
Priority updates go back to the shard the batch came from without waiting for an
answer; weights are published every `publish_every_updates`: `train` hands them back as
its second return value (CPU tensors), an object the caller owns, so the weights the
collectors use outlive the learner. The learner starts from the run's checkpoint when
there is one, so a learner that Ray restarts after a death goes on from the last save.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

import ray
import torch

from dqn.checkpoint import DistributedCheckpoint
from dqn.config import Config
from dqn.learning import make_learner, resolve_device
from dqn.process import torch_process
from dqn.replay import Batch

DORMANT_EVERY_UPDATES = 500  # one forward pass of a batch per 500 updates (~0.05 % of them)


class LearnerReport(NamedTuple):
    updates: int                 # total learner updates so far
    td_loss: float | None        # mean over this call's updates
    q_mean: float | None
    weights_version: int         # of the latest weights this learner published
    new_weights: bool            # whether this call hands back weights (its second value)
    wait_fraction: float         # share of this call spent waiting for batches
    device: str                  # e.g. "cuda (NVIDIA H200)" or "cpu"
    learning_rate: float         # the step size of the next update
    dormant: dict | None         # shares of dormant units per layer and "all" (latest check)
    recycled_units: int          # dormant units re-initialized so far (agent.recycle_dormant_...)
    started_at_updates: int      # the updates this actor started from (its checkpoint's)


@ray.remote
class LearnerActor:
    def __init__(self, cfg: Config, shard_names: list[str], obs_shape: tuple[int, ...],
                 num_actions: int, checkpoint: str | None = None):
        torch_process(cfg.ray.learner_threads)
        # Looked up by name, as collectors do: no handle among the arguments Ray keeps
        # to restart the actor with.
        self.cfg, self.shards = cfg, [ray.get_actor(name) for name in shard_names]
        self.device = resolve_device(cfg.run.device)
        self.device_name = str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                               if self.device.type == "cuda" else "")
        self.core = make_learner(cfg, obs_shape, num_actions, self.device)
        if checkpoint is not None and Path(checkpoint).is_file():
            self.core.load_state_dict(DistributedCheckpoint.load(Path(checkpoint)).learner)
        self.started_at = self.core.updates
        self.beta = cfg.replay.importance_exponent_start
        self.batches: queue.Queue = queue.Queue(maxsize=cfg.ray.prefetch_batches)
        self.version = 0
        self.fresh: dict | None = None   # weights published and not yet handed back
        self.dormant, self._dormant_at = None, -DORMANT_EVERY_UPDATES
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._prefetch, daemon=True)
        self._thread.start()

    def _publish(self) -> dict:
        self.version += 1
        return {k: v.detach().cpu().clone() for k, v in self.core.online.state_dict().items()}

    def _prefetch(self) -> None:
        pin = self.device.type == "cuda"
        in_flight: deque = deque()       # (shard, ref), oldest first
        turn = 0
        while not self._stop.is_set():
            while len(in_flight) < self.cfg.ray.samples_in_flight:
                shard = turn % len(self.shards)
                turn += 1
                in_flight.append((shard, self.shards[shard].sample.remote(
                    self.cfg.agent.batch_size, self.beta)))
            shard, ref = in_flight.popleft()
            batch = ray.get(ref)
            if batch is None:
                continue
            tensors = staged(batch, self.device, pin, self.core.online.prepare)
            self.batches.put((shard, batch.index, tensors,
                              self.core.target_values(tensors.next_obs)))
        # Let the requests still out end here, so no shard is killed under one of them.
        ray.wait([ref for _, ref in in_flight], num_returns=len(in_flight), timeout=5)

    @ray.method(num_returns=2)
    def train(self, num_updates: int, beta: float, max_wait_s: float = 2.0
              ) -> tuple[LearnerReport, dict | None]:
        """Run up to `num_updates` updates; returns early when no batch came for max_wait_s.
        Returns the report and the weights published since the last call (or None)."""
        self.beta = beta
        losses, qs, waited, start = [], [], 0.0, time.perf_counter()
        for _ in range(num_updates):
            t0 = time.perf_counter()
            try:
                shard, index, batch, ahead = self.batches.get(timeout=max_wait_s)
            except queue.Empty:
                waited += time.perf_counter() - t0
                break
            waited += time.perf_counter() - t0
            result = self.core.update(batch, ahead)
            if self.cfg.replay.prioritized:
                self.shards[shard].update_priorities.remote(index, result.td_abs)
            losses.append(result.td_loss)
            qs.append(result.q_mean)
            if self.core.updates % self.cfg.ray.publish_every_updates == 0:
                self.fresh = self._publish()
        if losses and self.core.updates - self._dormant_at >= DORMANT_EVERY_UPDATES:
            self._dormant_at = self.core.updates
            self.dormant = self.core.dormant_units(batch.obs)  # one forward pass of a batch
        elapsed = max(time.perf_counter() - start, 1e-9)
        report = LearnerReport(self.core.updates, _mean(losses), _mean(qs), self.version,
                               self.fresh is not None, waited / elapsed, self.device_name,
                               self.core.learning_rate(), self.dormant,
                               self.core.recycled_units, self.started_at)
        fresh, self.fresh = self.fresh, None
        return report, fresh

    def on_evaluation(self, mean_return: float) -> None:
        """An in-training evaluation's mean return (DQNLearner.on_evaluation)."""
        self.core.on_evaluation(mean_return)

    def where(self) -> tuple[int, str]:
        """(process id, Ray node id) of this actor."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    @ray.method(num_returns=2)
    def latest_weights(self) -> tuple[int, dict]:
        """The version and weights of the online network as they are now."""
        self.fresh = None
        return self.version, self._publish()

    def state(self) -> dict:
        """Networks, optimizer and counter on the CPU, for a checkpoint."""
        return _to_cpu(self.core.state_dict())

    def stop(self) -> None:
        """Stop sampling; returns once no sample request of this learner is out."""
        self._stop.set()
        deadline = time.monotonic() + 8
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.batches.get_nowait()        # a thread blocked on a full queue goes on
            self._thread.join(0.1)


def staged(batch: Batch, device: torch.device, pin: bool, prepare) -> Batch:
    """`batch` as tensors on `device`, its frames run through `prepare` (the network's
    input conversion, which update() then passes through). Frames travel to a GPU as
    uint8, 4x smaller than floats, and are converted there."""
    tensors = Batch(*(_to_device(torch.as_tensor(x), device, pin) for x in batch))
    return tensors._replace(obs=prepare(tensors.obs), next_obs=prepare(tensors.next_obs))


def _to_device(x: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    return x.pin_memory().to(device, non_blocking=True) if pin else x.to(device)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _to_cpu(state):
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_to_cpu(v) for v in state]
    return state
