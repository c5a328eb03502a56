"""An evaluator: plays whole greedy-ish episodes with published weights, off the hot path."""

from __future__ import annotations

import os
from typing import NamedTuple

import ray

from dqn.config import Config
from dqn.evaluation import evaluate
from dqn.networks import QNetwork
from dqn.process import torch_process


class EvalReport(NamedTuple):
    env_steps: int          # the training env steps when these weights were taken
    weights_version: int
    returns: list[float]    # unclipped scores
    lengths: list[int]      # env steps per episode
    pid: int = 0            # of the actor's process: a new one after Ray restarted it
    reconstructed: bool = False  # this process is a restart by Ray


@ray.remote
class Evaluator:
    def __init__(self, cfg: Config, obs_shape: tuple[int, ...], num_actions: int,
                 nice: int = 0):
        """`nice` > 0 beside training: its evaluations may wait, the learner may not."""
        torch_process(1, nice=nice)
        self.cfg = cfg
        self.net = QNetwork(obs_shape, num_actions, cfg.network).eval()

    def evaluate(self, weights: dict, weights_version: int, env_steps: int, seed: int,
                 episodes: int | None = None, eps: float | None = None) -> EvalReport:
        """Play `episodes` (default run.eval_episodes) with `eps` (default explore.eval_eps)."""
        self.net.load_state_dict(weights)
        episodes = evaluate(self.net, self.cfg.env, episodes or self.cfg.run.eval_episodes,
                            self.cfg.explore.eval_eps if eps is None else eps, seed=seed,
                            num_threads=1)  # one core at most; more actors for more
        return EvalReport(env_steps, weights_version, [e.score for e in episodes],
                          [e.env_steps for e in episodes], os.getpid(),
                          ray.get_runtime_context().was_current_actor_reconstructed)
