"""How the benchmarks time a call: rates and CPU per call, two sides in alternation so that
the noise of a shared machine hits both alike."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def timed_calls(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(calls per second, CPU milliseconds of this process per call) of `fn`, after one
    warm-up call."""
    fn()
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (calls / (time.perf_counter() - start),
            1000 * (time.process_time() - cpu) / max(calls, 1))


def calls_per_s(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`, after one warm-up call."""
    return timed_calls(fn, seconds)[0]


def paired_timings(ours: Callable[[], object], bare: Callable[[], object], seconds: float,
                   rounds: int = 5) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (calls per second, CPU ms per call) of two functions measured in
    alternation, so that noise from a shared machine hits both alike."""
    pairs = [(timed_calls(ours, seconds / rounds), timed_calls(bare, seconds / rounds))
             for _ in range(rounds)]
    median = lambda side, i: float(np.median([p[side][i] for p in pairs]))  # noqa: E731
    return (median(0, 0), median(0, 1)), (median(1, 0), median(1, 1))


def paired_rates(ours: Callable[[], object], bare: Callable[[], object], seconds: float,
                  rounds: int = 5) -> tuple[float, float]:
    """Median rates of two functions measured in alternation."""
    (ours_rate, _), (bare_rate, _) = paired_timings(ours, bare, seconds, rounds)
    return ours_rate, bare_rate


class Meter:
    """Env steps and updates over the whole run and over the learning phase."""

    def __init__(self, learning_starts: int):
        self.learning_starts = learning_starts
        self.start = time.perf_counter()
        self.learn_mark: tuple[float, int, int] | None = None

    def tick(self, env_steps: int, updates: int) -> None:
        if self.learn_mark is None and updates > 0:
            self.learn_mark = (time.perf_counter(), env_steps, updates)

    def report(self, env_steps: int, updates: int) -> dict:
        now = time.perf_counter()
        t0, s0, u0 = self.learn_mark or (now, env_steps, updates)
        learn_s = max(now - t0, 1e-9)
        return {"seconds": round(now - self.start, 1), "env_steps": env_steps,
                "learner_updates": updates,
                "env_steps_per_s": round(env_steps / (now - self.start), 2),
                "learning_seconds": round(learn_s, 1),
                "learning_env_steps_per_s": round((env_steps - s0) / learn_s, 2),
                "learning_updates_per_s": round((updates - u0) / learn_s, 2),
                "learning_env_steps_per_update": round(
                    (env_steps - s0) / max(updates - u0, 1), 2)}
