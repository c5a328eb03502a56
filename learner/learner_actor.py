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
answer; weights are published every `publish_every_updates` as one object ref
(CPU tensors) with a version number.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from typing import NamedTuple

import ray
import torch

from dqn.config import Config
from dqn.learning import make_learner, resolve_device
from dqn.process import torch_process
from dqn.replay import Batch

DORMANT_EVERY_UPDATES = 500  # one forward pass of a batch per 500 updates (~0.05 % of them)


class LearnerReport(NamedTuple):
    updates: int                 # total learner updates so far
    td_loss: float | None        # mean over this call's updates
    q_mean: float | None
    weights_version: int
    weights: ray.ObjectRef       # the latest published weights
    wait_fraction: float         # share of this call spent waiting for batches
    device: str                  # e.g. "cuda (NVIDIA H200)" or "cpu"
    learning_rate: float         # the step size of the next update
    dormant: dict | None         # shares of dormant units per layer and "all" (latest check)
    recycled_units: int          # dormant units re-initialized so far (agent.recycle_dormant_...)


@ray.remote
class LearnerActor:
    def __init__(self, cfg: Config, shards: list, obs_shape: tuple[int, ...],
                 num_actions: int, state: dict | None = None):
        torch_process(cfg.ray.learner_threads)
        self.cfg, self.shards = cfg, shards
        self.device = resolve_device(cfg.run.device)
        self.device_name = str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                               if self.device.type == "cuda" else "")
        self.core = make_learner(cfg, obs_shape, num_actions, self.device)
        if state is not None:
            self.core.load_state_dict(state)
        self.beta = cfg.replay.importance_exponent_start
        self.batches: queue.Queue = queue.Queue(maxsize=cfg.ray.prefetch_batches)
        self.version = 0
        self.weights = self._publish()
        self.dormant, self._dormant_at = None, -DORMANT_EVERY_UPDATES
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._prefetch, daemon=True)
        self._thread.start()

    def _publish(self) -> ray.ObjectRef:
        self.version += 1
        return ray.put({k: v.detach().cpu() for k, v in self.core.online.state_dict().items()})

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

    def train(self, num_updates: int, beta: float, max_wait_s: float = 2.0) -> LearnerReport:
        """Run up to `num_updates` updates; returns early when no batch came for max_wait_s."""
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
                self.weights = self._publish()
        if losses and self.core.updates - self._dormant_at >= DORMANT_EVERY_UPDATES:
            self._dormant_at = self.core.updates
            self.dormant = self.core.dormant_units(batch.obs)  # one forward pass of a batch
        elapsed = max(time.perf_counter() - start, 1e-9)
        return LearnerReport(self.core.updates, _mean(losses), _mean(qs), self.version,
                             self.weights, waited / elapsed, self.device_name,
                             self.core.learning_rate(), self.dormant,
                             self.core.recycled_units)

    def on_evaluation(self, mean_return: float) -> None:
        """An in-training evaluation's mean return (DQNLearner.on_evaluation)."""
        self.core.on_evaluation(mean_return)

    def where(self) -> tuple[int, str]:
        """(process id, Ray node id) of this actor."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def latest_weights(self) -> tuple[int, ray.ObjectRef]:
        return self.version, self.weights

    def state(self) -> dict:
        """Networks, optimizer and counter on the CPU, for a checkpoint."""
        return _to_cpu(self.core.state_dict())

    def stop(self) -> None:
        self._stop.set()


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
