"""Schedules of a counter: exploration per actor, and the learner's step size."""

from __future__ import annotations

import numpy as np


def linear(start: float, end: float, duration: int, t: int) -> float:
    """`start` at t = 0, moving linearly to `end` at t = duration, then constant."""
    frac = min(max(t, 0) / duration, 1.0)
    return start + frac * (end - start)


def apex_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """Ape-X per-actor exploration: eps_i = base^(1 + alpha * i / (N - 1)) (Horgan et al.).

    Actor 0 explores most (eps = base), actor N-1 least (base^(1 + alpha)); one actor
    gets `base`.
    """
    if num_actors == 1:
        return np.array([base])
    i = np.arange(num_actors)
    return base ** (1.0 + alpha * i / (num_actors - 1))


class StepSize:
    """The Adam step size of the learner's next update, as a function of its env-step
    clock; a variant of the update is a subclass, built from the config by `step_size`."""

    def __call__(self, env_steps: int) -> float:
        raise NotImplementedError

    def on_evaluation(self, mean_return: float) -> None:
        """An in-training evaluation's mean return (most step sizes ignore it)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores what state_dict() returned (nothing for most step sizes)."""


class ConstantStep(StepSize):
    def __init__(self, lr: float):
        self.lr = lr

    def __call__(self, env_steps: int) -> float:
        return self.lr


class LinearDecay(StepSize):
    """`start` until `begin_env_steps`, then linearly to `end` at `end_env_steps`."""

    def __init__(self, start: float, end: float, begin_env_steps: int, end_env_steps: int):
        self.start, self.end = start, end
        self.begin, self.duration = begin_env_steps, end_env_steps - begin_env_steps

    def __call__(self, env_steps: int) -> float:
        return linear(self.start, self.end, self.duration, env_steps - self.begin)


class SwitchAfterReturn(StepSize):
    """`start` until an in-training evaluation averages at least `threshold`, `end` from
    then on, whatever later evaluations score (the switch is kept in checkpoints)."""

    def __init__(self, start: float, end: float, threshold: float):
        self.start, self.end, self.threshold = start, end, threshold
        self.switched = False

    def __call__(self, env_steps: int) -> float:
        return self.end if self.switched else self.start

    def on_evaluation(self, mean_return: float) -> None:
        self.switched = self.switched or mean_return >= self.threshold

    def state_dict(self) -> dict:
        return {"switched": self.switched}

    def load_state_dict(self, state: dict) -> None:
        self.switched = bool(state.get("switched", False))


def step_size(lr: float, lr_end: float | None, decay_start_env_steps: int,
              decay_end_env_steps: int, end_after_eval_return: float | None) -> StepSize:
    """The step size the agent config asks for (its fields of the same names)."""
    if lr_end is None:
        return ConstantStep(lr)
    if end_after_eval_return is not None:
        return SwitchAfterReturn(lr, lr_end, end_after_eval_return)
    return LinearDecay(lr, lr_end, decay_start_env_steps, decay_end_env_steps)
