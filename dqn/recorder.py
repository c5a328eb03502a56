"""Turn vector-env steps into replay records: one new frame per env per step.

Every env step yields exactly one record per env, describing the frame the agent
acted on (the newest frame of the observation *before* the step):

    record_t = (frame_t, action_t, reward_t, terminated_t, first_t, last_t)

- `first` marks the first frame of an episode: stacks never look back past it.
- `last` marks an episode's final frame. It is the bootstrap state of the episode's
  last transitions and is not itself a transition: with NEXT_STEP autoreset its
  "action" was ignored by the env and its "reward" is the 0 of the reset step.
- `terminated` is the learner's terminal flag for the transition starting here: the
  game ended, or (with `life_loss_terminal`) a life was lost. A truncated episode
  (frame cap) is not terminated: its last frame is bootstrapped from.

So an episode of T transitions takes T + 1 records, and the frame that follows the
`last` record is the `first` of the next episode. Rewards are clipped here when asked;
episode scores are accumulated unclipped.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dqn.envs import EnvStep


class Records(NamedTuple):
    """Per-step replay records, time-major: arrays of shape (T, E, ...)."""

    frame: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    first: np.ndarray
    last: np.ndarray

    @staticmethod
    def concat(parts: list[Records]) -> Records:
        return Records(*(np.concatenate(arrays) for arrays in zip(*parts)))


class Episode(NamedTuple):
    env: int
    score: float       # unclipped return
    env_steps: int


class StepRecorder:
    def __init__(self, num_envs: int, clip_rewards: bool, life_loss_terminal: bool):
        self.num_envs = num_envs
        self.clip_rewards = clip_rewards
        self.life_loss_terminal = life_loss_terminal
        self._frame: np.ndarray | None = None
        self._first = np.ones(num_envs, bool)
        self._done = np.zeros(num_envs, bool)
        self._lives: np.ndarray | None = None
        self._score = np.zeros(num_envs, np.float64)
        self._length = np.zeros(num_envs, np.int64)

    def start(self, obs: np.ndarray, lives: np.ndarray | None) -> None:
        """Begin every env's stream at a freshly reset observation."""
        self._frame = obs[:, -1].copy()
        self._first[:] = True
        self._done[:] = False
        self._lives = None if lives is None else lives.copy()
        self._score[:] = 0.0
        self._length[:] = 0

    def record(self, actions: np.ndarray, step: EnvStep) -> tuple[Records, list[Episode]]:
        """The records of one vector step (shape (1, E, ...)) and the episodes it ended."""
        assert self._frame is not None, "call start() after reset"
        reset_step = self._done  # these envs ignored the action and reset
        reward = np.where(reset_step, 0.0, step.reward).astype(np.float32)
        ended = (step.terminated | step.truncated) & ~reset_step
        terminated = step.terminated & ~reset_step
        if self.life_loss_terminal and step.lives is not None and self._lives is not None:
            terminated = terminated | ((step.lives < self._lives) & ~reset_step)
        records = Records(
            frame=self._frame[None],
            action=actions.astype(np.int64)[None],
            reward=(np.sign(reward) if self.clip_rewards else reward)[None],
            terminated=terminated[None],
            first=self._first.copy()[None],
            last=reset_step.copy()[None],
        )
        self._score += reward
        self._length += ~reset_step
        episodes = [Episode(int(e), float(self._score[e]), int(self._length[e]))
                    for e in np.flatnonzero(ended)]
        self._score[ended] = 0.0
        self._length[ended] = 0
        self._frame = step.obs[:, -1].copy()
        self._first = reset_step.copy()
        self._done = ended
        if step.lives is not None:
            self._lives = step.lives.copy()
        return records, episodes
