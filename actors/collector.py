"""A collector: one vector env and a CPU copy of the Q-network behind a Ray actor.

Each `collect` call plays `chunk_env_steps` vector steps epsilon-greedily (one batched
forward pass per step), turns them into replay records (one new frame per env step),
computes Ape-X initial priorities from the Q-values it already has, and sends the chunk
to its replay shard. At most one chunk is in flight: the next call first waits for the
shard to take the previous one, which is how a rate-limited shard slows collectors.

Weights arrive as an argument of `collect` when the learner has published a newer
version; a restarted collector gets them again before it acts (the driver sees the
restart and resends).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import ray
import torch

from dqn.config import Config
from dqn.envs import make_vector_env
from dqn.networks import QNetwork
from dqn.nstep import chunk_priorities
from dqn.process import torch_process
from dqn.recorder import Episode, Records, StepRecorder
from dqn.schedules import linear


class CollectReport(NamedTuple):
    collector: int
    env_steps: int
    episodes: list[Episode]
    weights_version: int


@ray.remote
class Collector:
    def __init__(self, cfg: Config, index: int, shard_name: str, streams: np.ndarray,
                 epsilons: np.ndarray | None, seed: int):
        torch_process(1)
        # The shard is found by name, not passed as a handle: constructor arguments held in
        # the object store could be lost, and Ray could then not restart this actor.
        self.cfg, self.index, self.shard = cfg, index, ray.get_actor(shard_name)
        self.streams, self.epsilons = streams, epsilons
        self.env = make_vector_env(cfg.env, num_threads=1)
        self.net = QNetwork(self.env.obs_shape, self.env.num_actions, cfg.network).eval()
        self.version = -1
        self.rng = np.random.default_rng(seed)
        self.recorder = StepRecorder(self.env.num_envs, cfg.env.clip_rewards,
                                     cfg.env.life_loss_terminal)
        self.obs, lives = self.env.reset(seed=seed)
        self.recorder.start(self.obs, lives)
        self.in_flight: ray.ObjectRef | None = None

    def where(self) -> tuple[int, str]:
        """(process id, Ray node id) of this actor."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def collect(self, weights: dict | None, version: int, global_env_steps: int) -> CollectReport:
        if weights is not None:
            self.net.load_state_dict(weights)
            self.version = version
        if self.version < 0:
            raise RuntimeError(f"collector {self.index} was asked to act before it had weights")
        eps = self.epsilons if self.epsilons is not None else linear(
            self.cfg.explore.eps_start, self.cfg.explore.eps_end,
            self.cfg.explore.eps_decay_env_steps, global_env_steps)
        parts, qs, episodes = [], [], []
        n, num_actions = self.env.num_envs, self.env.num_actions
        # While every env explores with eps = 1 (the warm-up of the Nature schedule) the
        # network's answer is never used: skip it, and let replay give max priorities.
        use_net = bool(np.any(np.asarray(eps) < 1.0))
        for _ in range(self.cfg.ray.chunk_env_steps):
            explore = self.rng.random(n) < eps
            actions = self.rng.integers(0, num_actions, n)
            if use_net:
                with torch.no_grad():
                    q = self.net(torch.as_tensor(self.obs)).numpy()
                actions = np.where(explore, actions, q.argmax(axis=1))
                qs.append(q)
            step = self.env.step(actions)
            records, ended = self.recorder.record(actions, step)
            parts.append(records)
            episodes += ended
            self.obs = step.obs
        chunk = Records.concat(parts)
        priorities = None
        if self.cfg.replay.prioritized and use_net:
            priorities = chunk_priorities(chunk.reward, chunk.terminated, chunk.first, chunk.last,
                                          chunk.action, np.stack(qs), self.cfg.agent.gamma,
                                          self.cfg.agent.n_step)
        if self.in_flight is not None:
            ray.get(self.in_flight)
        self.in_flight = self.shard.add.remote(chunk, self.streams, priorities)
        return CollectReport(self.index, chunk.action.size, episodes, self.version)
