"""Learning tests: train for real and check the score.

CartPole-v1 from scratch with the single-process trainer must reach a mean greedy return
>= 475 over 10 episodes within 50,000 env steps. Training stops at the first in-training
evaluation that reaches 475 (DQN on CartPole is known to forget after solving it); the
final network is then judged on 10 fresh greedy episodes with seeds training never saw.
"""

import numpy as np
import pytest

from dqn.config import load_config
from dqn.evaluation import evaluate
from dqn.serial import train


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_is_solved_within_50k_env_steps(seed, run_dir):
    cfg = load_config("cartpole", [f"run.seed={seed}", f"run.out_dir={run_dir}"])
    result = train(cfg, progress=False)
    assert result.env_steps <= 50_000
    assert result.evaluations and result.evaluations[-1].mean_return >= 475
    episodes = evaluate(result.learner.online, cfg.env, 10, eps=0.0, seed=777_000 + seed)
    assert len(episodes) == 10
    assert np.mean([e.score for e in episodes]) >= 475
