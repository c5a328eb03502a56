"""The DQN learner's step, read top to bottom: sample -> loss -> optimizer -> target sync.

Shared by the single-process trainer and the Ray learner actor, which differ only in
where batches come from and where priorities and weights go.
"""

from __future__ import annotations

import copy
import threading
from typing import NamedTuple

import numpy as np
import torch

from dqn.config import Config
from dqn.losses import LossOutput, q_targets, td_loss
from dqn.networks import QNetwork, dormant_fractions, recycle_dormant
from dqn.precision import bfloat16_passes, layers_of
from dqn.replay import Batch
from dqn.schedules import step_size


def resolve_device(name: str) -> torch.device:
    """`auto` is cuda when a GPU is visible, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def initial_network(cfg: Config, obs_shape: tuple[int, ...], num_actions: int) -> QNetwork:
    """The Q-network a run starts from: its weights follow `run.seed` alone, in any process
    (torch's global random stream is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        return QNetwork(obs_shape, num_actions, cfg.network)


class UpdateResult(NamedTuple):
    td_abs: np.ndarray   # (B,) new priorities for the sampled ids
    td_loss: float
    q_mean: float


class TargetValues(NamedTuple):
    """target(next_obs) for a batch, computed ahead (the learner actor's prefetch thread)."""
    version: int          # DQNLearner.target_version it was computed with
    q_next: torch.Tensor  # (B, actions)


class DQNLearner:
    recycled_units = 0  # dormant units re-initialized so far (RecyclingDQNLearner)

    def __init__(self, cfg: Config, obs_shape: tuple[int, ...], num_actions: int,
                 device: torch.device):
        self.cfg = cfg.agent
        self.device = device
        self.online = initial_network(cfg, obs_shape, num_actions).to(device)
        self.bf16 = bfloat16_passes(self.cfg.precision, device, layers_of(self.online))
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        # The target network changes only at a sync, so its pass over a batch's next states
        # can run ahead in another thread (target_values); the lock keeps a sync from
        # rewriting the weights under that pass, the version tells update() whether a
        # value computed ahead is still the current network's.
        self.target_version = 0
        self._target_lock = threading.Lock()
        # fused: one kernel for all parameters instead of ~8 elementwise passes each
        # (CPU and CUDA; the same update rule).
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=self.cfg.learning_rate,
                                          eps=self.cfg.adam_eps, fused=True)
        self.updates = 0
        self.learning_starts = cfg.replay.learning_starts_env_steps
        self.step_size = step_size(
            self.cfg.learning_rate, self.cfg.lr_end, self.cfg.lr_decay_start_env_steps,
            self.cfg.lr_decay_end_env_steps, self.cfg.lr_end_after_eval_return)

    def env_steps(self) -> int:
        """The learner's env-step clock: learning_starts + updates x update_every_env_steps,
        which the rate limiter keeps within a few hundred steps of the collectors' count."""
        return self.learning_starts + self.updates * self.cfg.update_every_env_steps

    def learning_rate(self) -> float:
        """The step size of the next update."""
        return self.step_size(self.env_steps())

    def target_values(self, next_obs: torch.Tensor) -> TargetValues:
        """The target network's values of prepared next states, safe to call from another
        thread while update() runs; update() uses them if no sync came in between."""
        with self._target_lock, torch.no_grad(), torch.autocast(
                self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return TargetValues(self.target_version, self.target(next_obs))

    def update(self, batch: Batch, ahead: TargetValues | None = None) -> UpdateResult:
        """One step on `batch`; `ahead`: target_values(batch's prepared next states)."""
        b = _to_tensors(batch, self.device)
        out = self.loss(b, ahead)
        self.step(out.loss, b)
        if self.updates % self.cfg.target_update_period_updates == 0:
            with self._target_lock:
                self.target.load_state_dict(self.online.state_dict())
                self.target_version += 1
        return UpdateResult(out.td_abs.cpu().numpy(), out.loss.item(), out.q_taken.mean().item())

    def loss(self, b: Batch, ahead: TargetValues | None = None) -> LossOutput:
        """The TD loss of the online network on tensors `b`: its passes under bfloat16
        autocast where asked, the targets and the loss in float32."""
        next_obs = self.online.prepare(b.next_obs)  # once for the target and online passes
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            q = self.online(b.obs)
            with torch.no_grad():
                q_next_target = (ahead.q_next if ahead is not None
                                 and ahead.version == self.target_version
                                 else self.target(next_obs))
                q_next_online = self.online(next_obs) if self.cfg.double_q else None
        with torch.no_grad():
            target = q_targets(b.reward, b.discount, _f32(q_next_online), q_next_target.float())
        return td_loss(q.float(), b.action, target, b.weight, self.cfg.huber_delta)

    def step(self, loss: torch.Tensor, b: Batch) -> None:
        """Backward, clip, and one Adam step at the step size of this update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.cfg.grad_clip_norm)
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.updates += 1

    def on_evaluation(self, mean_return: float) -> None:
        """An in-training evaluation's mean return, for a step size that follows it
        (agent.lr_end_after_eval_return)."""
        self.step_size.on_evaluation(mean_return)

    def dormant_units(self, obs) -> dict:
        """Shares of dormant units of the online network on `obs` (networks.dormant_fractions)."""
        return dormant_fractions(self.online, torch.as_tensor(obs).to(self.device))

    def state_dict(self) -> dict:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates,
                "step_size": self.step_size.state_dict(),
                "recycled_units": self.recycled_units}

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        with self._target_lock:
            self.target.load_state_dict(state["target"])
            self.target_version += 1
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.step_size.load_state_dict(state.get("step_size", {}))
        self.recycled_units = int(state.get("recycled_units", 0))


class RecyclingDQNLearner(DQNLearner):
    """DQN with ReDo (Sokar et al. 2023): every `agent.recycle_dormant_every_updates`
    updates, the online network's dormant units on the batch get fresh incoming and zero
    outgoing weights (networks.recycle_dormant), before the target sync."""

    def step(self, loss: torch.Tensor, b: Batch) -> None:
        super().step(loss, b)
        if self.updates % self.cfg.recycle_dormant_every_updates == 0:
            self.recycled_units += recycle_dormant(self.online, b.obs, self.optimizer)


def make_learner(cfg: Config, obs_shape: tuple[int, ...], num_actions: int,
                 device: torch.device) -> DQNLearner:
    """The learner the config asks for: DQN, or DQN with ReDo."""
    variant = RecyclingDQNLearner if cfg.agent.recycle_dormant_every_updates else DQNLearner
    return variant(cfg, obs_shape, num_actions, device)


def _f32(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.float()


def _to_tensors(batch: Batch, device: torch.device) -> Batch:
    return Batch(*(torch.as_tensor(x).to(device, non_blocking=True) for x in batch))


def epsilon_greedy(q_net: torch.nn.Module, obs: np.ndarray, eps: float | np.ndarray,
                   rng: np.random.Generator, device: torch.device | None = None) -> np.ndarray:
    """One batched forward pass for all envs; each env explores with its own eps."""
    with torch.no_grad():
        q = q_net(torch.as_tensor(obs, device=device))
    greedy = q.argmax(dim=1).cpu().numpy()
    n = len(obs)
    explore = rng.random(n) < eps
    return np.where(explore, rng.integers(0, q.shape[1], n), greedy)
