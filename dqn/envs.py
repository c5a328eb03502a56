"""Vector environments behind one small contract.

Atari runs in ale-py's `AtariVectorEnv` (C++ threads doing the standard preprocessing:
84x84 grayscale, frame-skip with max-pooling, frame stacking, no-op starts, sticky
actions, the episode cap in frames). Classic control runs in gymnasium's synchronous
vector env. Both autoreset with NEXT_STEP semantics: after an env reports
`terminated` or `truncated`, its next `step` ignores the action and returns the first
observation of a new episode with reward 0 — that step is not a transition
(`dqn.recorder.StepRecorder` takes care of it).

Observations always have the shape (num_envs, stack, *frame): the newest frame is
`obs[:, -1]`. Rewards come back unclipped; clipping is a training-time choice.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from dqn.config import EnvConfig


class EnvStep(NamedTuple):
    obs: np.ndarray          # (N, stack, *frame): observation after the step
    reward: np.ndarray       # (N,) float32, unclipped game score
    terminated: np.ndarray   # (N,) bool: the game is over
    truncated: np.ndarray    # (N,) bool: the episode hit the frame cap
    lives: np.ndarray | None  # (N,) int, Atari only


class VectorEnv(Protocol):
    num_envs: int
    num_actions: int
    obs_shape: tuple[int, ...]   # (stack, *frame)
    obs_dtype: np.dtype

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray | None]: ...
    def step(self, actions: np.ndarray) -> EnvStep: ...
    def close(self) -> None: ...


class AtariEnv:
    """`AtariVectorEnv` with the Machado et al. (2018) protocol by default."""

    def __init__(self, cfg: EnvConfig, num_envs: int, num_threads: int = 0):
        from ale_py.vector_env import AtariVectorEnv

        self._env = AtariVectorEnv(
            cfg.id, num_envs,
            num_threads=num_threads,
            repeat_action_probability=cfg.sticky_action_prob,
            noop_max=cfg.noop_max,
            frameskip=cfg.frame_skip,
            stack_num=cfg.frame_stack,
            max_num_frames_per_episode=cfg.max_episode_frames,
            # Life-loss terminals and clipping are training choices made by the
            # recorder, so that the env always plays whole games with true scores.
            episodic_life=False,
            reward_clipping=False,
        )
        self.num_envs = num_envs
        self.num_actions = int(self._env.single_action_space.n)
        self.obs_shape = tuple(self._env.single_observation_space.shape)
        self.obs_dtype = np.dtype(np.uint8)

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        obs, info = self._env.reset(seed=seed)
        return obs, info["lives"]

    def step(self, actions: np.ndarray) -> EnvStep:
        obs, reward, terminated, truncated, info = self._env.step(actions)
        return EnvStep(obs, reward.astype(np.float32), terminated, truncated, info["lives"])

    def close(self) -> None:
        self._env.close()


class ClassicEnv:
    """A gymnasium classic-control task; each observation is a single 'frame'."""

    def __init__(self, cfg: EnvConfig, num_envs: int):
        import gymnasium as gym

        self._env = gym.make_vec(cfg.id, num_envs=num_envs, vectorization_mode="sync")
        self.num_envs = num_envs
        self.num_actions = int(self._env.single_action_space.n)
        self.obs_shape = (1, *self._env.single_observation_space.shape)
        self.obs_dtype = np.dtype(np.float32)

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        obs, _ = self._env.reset(seed=seed)
        return obs[:, None].astype(np.float32), None

    def step(self, actions: np.ndarray) -> EnvStep:
        obs, reward, terminated, truncated, _ = self._env.step(actions)
        return EnvStep(obs[:, None].astype(np.float32), reward.astype(np.float32),
                       terminated, truncated, None)

    def close(self) -> None:
        self._env.close()


def make_vector_env(cfg: EnvConfig, num_envs: int | None = None,
                    num_threads: int = 0) -> VectorEnv:
    """The env named by `cfg.id`; `num_threads` is ALE's worker count (0: one per env)."""
    n = num_envs or cfg.num_envs
    if cfg.is_atari:
        return AtariEnv(cfg, n, num_threads=num_threads)
    return ClassicEnv(cfg, n)
