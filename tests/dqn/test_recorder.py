"""StepRecorder on a scripted env that follows gymnasium's NEXT_STEP autoreset."""

import numpy as np

from dqn.envs import EnvStep
from dqn.recorder import StepRecorder


def obs(*frame_ids):
    """A (E, stack=2, 1) observation whose newest frame holds the given ids."""
    return np.array([[[0], [i]] for i in frame_ids], np.float32)


def step(frame_ids, reward, terminated=(False,), truncated=(False,), lives=None):
    return EnvStep(obs(*frame_ids), np.array(reward, np.float32), np.array(terminated),
                   np.array(truncated), None if lives is None else np.array(lives))


def test_reset_step_after_an_episode_end_is_a_last_frame_not_a_transition():
    rec = StepRecorder(1, clip_rewards=True, life_loss_terminal=False)
    rec.start(obs(10), None)
    out = [rec.record(np.array([a]), s) for a, s in [
        (1, step([11], [5.0])),
        (2, step([12], [-3.0], terminated=[True])),   # game over: 12 is the final frame
        (3, step([20], [0.0])),                       # NEXT_STEP reset: action ignored
        (0, step([21], [1.0])),
    ]]
    rows = [(int(r.frame[0, 0, 0]), int(r.action[0, 0]), float(r.reward[0, 0]),
             bool(r.terminated[0, 0]), bool(r.first[0, 0]), bool(r.last[0, 0])) for r, _ in out]
    assert rows == [
        (10, 1, 1.0, False, True, False),    # rewards clipped for training
        (11, 2, -1.0, True, False, False),
        (12, 3, 0.0, False, False, True),    # the final frame: bootstrap target only
        (20, 0, 1.0, False, True, False),    # the new episode's first frame
    ]
    episodes = [e for _, eps in out for e in eps]
    assert [(e.score, e.env_steps) for e in episodes] == [(2.0, 2)]   # unclipped score


def test_truncation_ends_the_episode_without_a_terminal():
    rec = StepRecorder(1, clip_rewards=False, life_loss_terminal=False)
    rec.start(obs(1), None)
    r1, e1 = rec.record(np.array([0]), step([2], [1.0], truncated=[True]))
    r2, _ = rec.record(np.array([0]), step([7], [0.0]))
    assert not r1.terminated[0, 0] and r2.last[0, 0]
    assert [(e.score, e.env_steps) for e in e1] == [(1.0, 1)]


def test_life_loss_is_terminal_for_training_but_the_episode_goes_on():
    rec = StepRecorder(1, clip_rewards=False, life_loss_terminal=True)
    rec.start(obs(1), np.array([3]))
    r1, e1 = rec.record(np.array([0]), step([2], [0.0], lives=[2]))
    r2, _ = rec.record(np.array([0]), step([3], [4.0], lives=[2]))
    assert r1.terminated[0, 0] and not r2.terminated[0, 0]
    assert not r2.first[0, 0] and not r2.last[0, 0] and e1 == []


def test_envs_are_independent_columns():
    rec = StepRecorder(2, clip_rewards=False, life_loss_terminal=False)
    rec.start(obs(1, 100), None)
    rec.record(np.array([0, 0]), step([2, 101], [1.0, 2.0], terminated=[False, True],
                                      truncated=[False, False]))
    r, _ = rec.record(np.array([1, 1]), step([3, 200], [1.0, 0.0], terminated=[False, False],
                                             truncated=[False, False]))
    assert r.last[0].tolist() == [False, True]
    assert r.frame[0, :, 0].tolist() == [2, 101]
