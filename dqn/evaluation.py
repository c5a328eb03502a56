"""Play whole episodes with an epsilon-greedy policy and report unclipped scores.

Episodes are spread over a vector env with a fixed quota per env, so short episodes
are not over-represented: each env plays its quota and then idles.
"""

from __future__ import annotations

import numpy as np
import torch

from dqn.config import EnvConfig
from dqn.envs import make_vector_env
from dqn.learning import epsilon_greedy
from dqn.recorder import Episode, StepRecorder


def evaluate(q_net: torch.nn.Module, env_cfg: EnvConfig, episodes: int, eps: float,
             seed: int, device: torch.device | None = None,
             max_envs: int = 8, num_threads: int = 0) -> list[Episode]:
    """`num_threads`: ALE's worker threads (0: one per env); 1 beside training, where
    more threads would take the cores from the learner and collectors."""
    num_envs = min(episodes, max_envs)
    quota = np.full(num_envs, episodes // num_envs) + (np.arange(num_envs) < episodes % num_envs)
    env = make_vector_env(env_cfg, num_envs, num_threads=num_threads)
    rng = np.random.default_rng(seed)
    recorder = StepRecorder(num_envs, clip_rewards=False, life_loss_terminal=False)
    obs, lives = env.reset(seed=seed)
    recorder.start(obs, lives)
    finished: list[Episode] = []
    done = np.zeros(num_envs, np.int64)
    was_training = q_net.training
    q_net.eval()
    try:
        while (done < quota).any():
            actions = epsilon_greedy(q_net, obs, eps, rng, device)
            step = env.step(actions)
            _, ended = recorder.record(actions, step)
            for episode in ended:
                if done[episode.env] < quota[episode.env]:
                    finished.append(episode)
                    done[episode.env] += 1
            obs = step.obs
    finally:
        env.close()
        q_net.train(was_training)
    return finished


def visited_observations(q_net: torch.nn.Module, env_cfg: EnvConfig, states: int, eps: float,
                         seed: int) -> np.ndarray:
    """The observations of `states` consecutive decisions of one env playing eps-greedily
    (episodes restart as they end)."""
    env = make_vector_env(env_cfg, num_envs=1)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    seen = []
    for _ in range(states):
        seen.append(obs[0])
        obs = env.step(epsilon_greedy(q_net, obs, eps, rng)).obs
    env.close()
    return np.stack(seen)
