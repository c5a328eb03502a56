"""The env contract on real ALE games and on CartPole."""

import numpy as np
import pytest

from dqn.config import build_config
from dqn.envs import make_vector_env


def test_atari_observations_are_stacked_84x84_bytes_with_true_scores():
    cfg = build_config({"env": {"id": "pong", "num_envs": 2}}).env
    env = make_vector_env(cfg)
    obs, lives = env.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert env.obs_shape == (4, 84, 84) and env.num_actions == 6
    # AtariVectorEnv pads the stack with zeros at reset; replay pads the same way.
    assert (obs[:, :3] == 0).all() and obs[:, 3].any()
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(300):
        step = env.step(rng.integers(0, 6, 2))
        rewards.append(step.reward)
    env.close()
    assert step.obs[:, -1].any() and step.lives is not None
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0} and np.min(rewards) == -1.0


def test_rewards_are_not_clipped_by_the_env():
    """Space Invaders pays 5 to 30 points an invader: the env must report them raw."""
    cfg = build_config({"env": {"id": "space_invaders", "num_envs": 2}}).env
    env = make_vector_env(cfg)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    best = max(env.step(rng.integers(0, env.num_actions, 2)).reward.max() for _ in range(400))
    env.close()
    assert best >= 5.0


def test_frame_cap_truncates_in_frames():
    cfg = build_config({"env": {"id": "breakout", "num_envs": 1, "max_episode_frames": 200,
                                "sticky_action_prob": 0.0}}).env
    env = make_vector_env(cfg)
    env.reset(seed=0)
    for t in range(100):
        step = env.step(np.array([1]))  # FIRE keeps the game going
        if step.truncated[0] or step.terminated[0]:
            break
    env.close()
    assert step.truncated[0] and not step.terminated[0]
    assert 200 // 4 - 1 <= t <= 200 // 4 + 8   # 4 frames per step, a few no-ops at reset


def test_cartpole_matches_the_same_contract():
    cfg = build_config({"env": {"id": "CartPole-v1", "num_envs": 3}}).env
    env = make_vector_env(cfg)
    obs, lives = env.reset(seed=0)
    assert obs.shape == (3, 1, 4) and obs.dtype == np.float32 and lives is None
    step = env.step(np.zeros(3, np.int64))
    assert step.reward.tolist() == [1.0, 1.0, 1.0]
    env.close()


@pytest.mark.parametrize("game", ["space_invaders", "seaquest", "ms_pacman"])
def test_any_game_ale_ships(game):
    env = make_vector_env(build_config({"env": {"id": game, "num_envs": 1}}).env)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (1, 4, 84, 84)
    env.close()
